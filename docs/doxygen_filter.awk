# Doxygen input filter: aioring's headers document with plain // comments (the project's
# style). This turns them into Doxygen comments on the fly, leaving the files untouched:
# the opening comment block of a header becomes its \file description, a comment block
# before a declaration becomes ///, and a trailing `// note` after code becomes ///<.
BEGIN { in_header = 1 }
{
    line = $0
    if (line ~ /^\/\/ SPDX-License-Identifier:/) { print ""; next }  # the licence tag is no doc
    if (in_header) {
        if (line ~ /^\/\/ ?/) {
            text = line
            sub(/^\/\/ ?/, "", text)
            if (!started) { print "/// \\file"; started = 1 }
            print "/// " text
            next
        }
        in_header = 0
    }
    if (line ~ /^[ \t]*\/\/[^\/!]/ || line ~ /^[ \t]*\/\/$/) {
        sub(/\/\//, "///", line)
        print line
        next
    }
    if (line ~ /[;{},)][ \t]+\/\/ /) {
        sub(/[ \t]+\/\/ /, " ///< ", line)
    }
    print line
}
