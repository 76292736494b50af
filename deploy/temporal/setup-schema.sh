#!/bin/sh
# One-shot (temporalio/admin-tools): Temporal's two databases and their schema, before the server
# starts. Safe to run again: an existing database is kept, and update-schema applies only the
# versions a newer server image brings (run it after every Temporal upgrade: `docker compose up`
# does).
set -eu
: "${SQL_HOST:?}" "${SQL_USER:?}" "${SQL_PASSWORD:?}"
export SQL_PLUGIN=postgres12 SQL_PORT="${SQL_PORT:-5432}"
SCHEMA=/etc/temporal/schema/postgresql/v12

create_database() {
    if out=$(temporal-sql-tool --db "$1" create 2>&1); then
        echo "created database $1"
    elif printf '%s' "$out" | grep -q 'already exists'; then
        echo "database $1 exists"
    else
        printf '%s\n' "$out" >&2
        exit 1
    fi
}

for pair in temporal:temporal temporal_visibility:visibility; do
    db=${pair%%:*}
    dir=${pair##*:}
    create_database "$db"
    temporal-sql-tool --db "$db" setup-schema -v 0.0
    temporal-sql-tool --db "$db" update-schema -d "$SCHEMA/$dir/versioned"
done
echo "Temporal schema is up to date"
