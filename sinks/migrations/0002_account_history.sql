-- An account's transfers, newest first across shards: the API reads them in
-- (block DESC, shard DESC, position DESC) order, from a cursor down, for the sender and for the
-- receiver. These indexes hold exactly that order, so a page is an index walk of its own length
-- whatever the account's history holds. They replace the per-shard ones of 0001, which no read
-- uses, so the writer maintains as many indexes as before.
-- The sink applies this when it connects, before it writes: on an archive that already holds
-- many rows, building the indexes takes a while, during which the sink keeps what it receives
-- (within its pending bound) and then catches up.

DROP INDEX IF EXISTS transfers_from;
DROP INDEX IF EXISTS transfers_to;

CREATE INDEX transfers_from_order ON transfers (from_address, block DESC, shard DESC, position DESC);
CREATE INDEX transfers_to_order ON transfers (to_address, block DESC, shard DESC, position DESC);
