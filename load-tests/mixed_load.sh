#!/bin/sh
# Mixed load against Titanium: list, detail and create posts concurrently at given rates.
# POSIX sh + curl (jq optional). See load-tests/README.md or --help.
LOAD_NAME=mixed_load
LOAD_PLUS=0
LOAD_DIR=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd) || exit 2
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$LOAD_DIR/lib.sh"
load_main "$@"
