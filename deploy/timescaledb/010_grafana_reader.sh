#!/bin/sh
# Runs once, when the TimescaleDB container initialises an empty data volume: creates the
# read-only role Grafana logs in with (grafana-reader.psql beside this file; see docker-compose.yml).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v reader=grafana \
    -v reader_password="$GRAFANA_DB_PASSWORD" \
    -v owner="$POSTGRES_USER" \
    -v dbname="$POSTGRES_DB" \
    -f /etc/bedwatch/grafana-reader.psql
