#!/bin/sh
# One-shot (temporalio/admin-tools), once the server answers: the namespace and the app's search
# attributes (core/contracts.py SEARCH_ATTRIBUTES; devstack gives the dev server the same ones).
# Safe to run again: what exists is left alone.
set -eu
: "${TEMPORAL_ADDRESS:?}" "${NAMESPACE:?}" "${SEARCH_ATTRIBUTES:?}"
export TEMPORAL_ADDRESS

# A new namespace takes a few seconds to reach every part of the server: retry, then fail loudly.
retry() {
    tries=0
    until "$@"; do
        tries=$((tries + 1))
        if [ "$tries" -ge 60 ]; then
            echo "gave up after $tries tries: $*" >&2
            exit 1
        fi
        sleep 2
    done
}

retry temporal operator cluster health >/dev/null

if temporal operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1; then
    echo "namespace $NAMESPACE exists"
else
    temporal operator namespace create --namespace "$NAMESPACE" --retention "${RETENTION:-72h}"
    echo "created namespace $NAMESPACE"
fi

retry temporal operator search-attribute list --namespace "$NAMESPACE" >/dev/null
existing=$(temporal operator search-attribute list --namespace "$NAMESPACE")
for name in $SEARCH_ATTRIBUTES; do
    if printf '%s\n' "$existing" | grep -qw "$name"; then
        echo "search attribute $name exists"
    else
        retry temporal operator search-attribute create --namespace "$NAMESPACE" \
            --name "$name" --type Keyword
        echo "created search attribute $name"
    fi
done
