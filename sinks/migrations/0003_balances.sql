-- Accounts' latest balances, one row per account and asset, written with the transfers of the
-- same entries (in the same transaction as the shard's cursor). An account lives on one shard,
-- so only that shard's entries change its rows.

CREATE TABLE balances (
    address BYTEA          NOT NULL CHECK (octet_length(address) = 32),
    asset   BIGINT         NOT NULL CHECK (asset >= 0),
    balance NUMERIC(20, 0) NOT NULL CHECK (balance >= 0),
    shard   INTEGER        NOT NULL CHECK (shard >= 0),
    -- The log index of the entry that last changed it.
    block   BIGINT         NOT NULL CHECK (block >= 1),
    PRIMARY KEY (address, asset)
);
