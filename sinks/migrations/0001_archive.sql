-- The archive of committed transfers. One row per transfer, in the shard's log order; the
-- cursor of each shard (the last log index archived) is written in the same transaction as
-- the rows it covers, so a crash or restart of either side never duplicates or skips one.

CREATE TABLE transfers (
    tx_hash      BYTEA          NOT NULL PRIMARY KEY CHECK (octet_length(tx_hash) = 32),
    shard        INTEGER        NOT NULL CHECK (shard >= 0),
    -- The log index (block height) of the entry that decided it.
    block        BIGINT         NOT NULL CHECK (block >= 1),
    -- Its position in that entry.
    position     INTEGER        NOT NULL CHECK (position >= 0),
    from_address BYTEA          NOT NULL CHECK (octet_length(from_address) = 32),
    to_address   BYTEA          NOT NULL CHECK (octet_length(to_address) = 32),
    asset        BIGINT         NOT NULL CHECK (asset >= 0),
    amount       NUMERIC(20, 0) NOT NULL CHECK (amount >= 0),
    nonce        NUMERIC(20, 0) NOT NULL CHECK (nonce >= 0),
    -- The contract's result code (OK, INSUFFICIENT_FUNDS, ...).
    result       TEXT           NOT NULL,
    UNIQUE (shard, block, position)
);

CREATE INDEX transfers_from ON transfers (from_address, shard, block DESC, position DESC);
CREATE INDEX transfers_to ON transfers (to_address, shard, block DESC, position DESC);

CREATE TABLE shard_cursors (
    shard         INTEGER NOT NULL PRIMARY KEY CHECK (shard >= 0),
    -- The last log index whose transfers are all archived (0: none).
    archived_index BIGINT  NOT NULL CHECK (archived_index >= 0)
);
