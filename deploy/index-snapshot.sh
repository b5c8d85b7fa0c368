#!/bin/sh
# The compose "indexer" job: build the snapshot the replicas serve into the shared volume.
#
# Environment:
#   PRODUCTSEARCH_INDEX_DIR  snapshot folder to write (default /data/snapshot)
#   CATALOGUE                catalogue file (default /catalogue/catalogue.jsonl); when it is
#                            missing, the bundled demo catalogue is indexed instead
#   CATALOGUE_LANGS          analysis languages, catalogue default first (default en)
#   INDEX_ARGS               more `productsearch index` options (e.g. "--embedder none")
#   REBUILD=1                rebuild even when a snapshot exists already
#
# A build writes a temporary sibling folder and renames it into place, so the replicas (and a
# build killed midway) never see half a snapshot. Replicas already serving pick a rebuilt
# snapshot up on POST /admin/snapshot/reload.
set -eu

out="${PRODUCTSEARCH_INDEX_DIR:-/data/snapshot}"
catalogue="${CATALOGUE:-/catalogue/catalogue.jsonl}"
langs="${CATALOGUE_LANGS:-en}"

if [ -f "$out/manifest.json" ] && [ "${REBUILD:-0}" != "1" ]; then
    echo "snapshot $out exists; set REBUILD=1 to rebuild it"
    exit 0
fi

if [ ! -f "$catalogue" ]; then
    demo="$(dirname "$out")/demo"
    echo "no catalogue at $catalogue: indexing the bundled demo catalogue ($demo)"
    python -c 'import sys; from pathlib import Path; from indexer.demo import write_demo_catalogue; write_demo_catalogue(Path(sys.argv[1]))' "$demo"
    catalogue="$demo/catalogue.jsonl"
    langs="en,pl"
fi

# shellcheck disable=SC2086  # INDEX_ARGS is a list of options, split on purpose
exec productsearch index "$catalogue" --out "$out" --force --lang "$langs" ${INDEX_ARGS:-}
