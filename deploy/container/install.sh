#!/bin/sh
# The image's install steps, shared by the Containerfile and CI (.ci/run runs this same file
# in a clean directory): a virtual environment at PREFIX holding veritee from SRC and its
# dependencies, then a smoke check that the command and the service import.
#   usage: install.sh PREFIX SRC
set -eu
PREFIX=$1
SRC=$2
python3 -m venv "$PREFIX"
"$PREFIX/bin/python" -m pip install --quiet --no-compile "$SRC"
"$PREFIX/bin/veritee" --version
"$PREFIX/bin/python" -c "import veritee.service.app, veritee.service.server"
