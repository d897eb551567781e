#!/bin/sh
# Mixed load against Titanium: list, detail, create, update and delete posts concurrently at
# given rates; --cleanup deletes what the run created. POSIX sh + curl (jq optional).
# See load-tests/README.md or --help.
LOAD_NAME=mixed_load_plus
LOAD_PLUS=1
LOAD_DIR=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd) || exit 2
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$LOAD_DIR/lib.sh"
load_main "$@"
