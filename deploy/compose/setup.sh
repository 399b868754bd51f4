#!/bin/sh
# The files the three validators of the local stack share, made once by the `setup` service of
# compose.yaml into the `stack` volume (usage: setup.sh DIR; DIR is /etc/aurigraph/stack there):
# - DIR/peer-certs/: a development CA and one peer certificate per validator, for the mutual TLS
#   of the peer links (`aurigraph certs --peer-ids`);
# - DIR/tokens.json: the tokens file the validators read (`tokens`), with one admin token, and
#   DIR/admin.token: that token, for `aurigraph backup` and `aurigraph validators`.
# Files already there are kept, so a second `docker compose up` changes nothing.
set -eu
dir="${1:?usage: setup.sh DIR}"
umask 077
mkdir -p "$dir/peer-certs"
for id in 1 2 3; do
    if [ ! -f "$dir/peer-certs/peer-$id.pem" ]; then
        # Signs with the CA already in peer-certs/, or makes it on the first run.
        aurigraph certs --dir "$dir/peer-certs" --peer-ids "$id"
    fi
done
if [ ! -f "$dir/admin.token" ]; then
    aurigraph token new --role admin --name ops --file "$dir/tokens.json" > "$dir/admin.token.new"
    mv "$dir/admin.token.new" "$dir/admin.token"
fi
echo "setup: peer certificates and tokens in $dir"
