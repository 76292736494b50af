#!/bin/sh
# Runs once, when the PostgreSQL volume is new (docker-entrypoint-initdb.d): the app's role and
# database, and Temporal's role (it creates its two databases itself, see temporal/setup-schema.sh).
# Changing a password later is `ALTER ROLE … PASSWORD …` in psql: this file won't run again.
set -eu
: "${APP_DB_PASSWORD:?APP_DB_PASSWORD is required}"
: "${TEMPORAL_DB_PASSWORD:?TEMPORAL_DB_PASSWORD is required}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v app_password="$APP_DB_PASSWORD" -v temporal_password="$TEMPORAL_DB_PASSWORD" <<'SQL'
CREATE ROLE autosync LOGIN PASSWORD :'app_password';
CREATE DATABASE autosync OWNER autosync;
CREATE ROLE temporal LOGIN CREATEDB PASSWORD :'temporal_password';
SQL
