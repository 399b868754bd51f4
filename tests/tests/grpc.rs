//! The gRPC API (package `aurigraph.v11`, docs/api.md) end to end: a real `aurigraph node`
//! process started by testkit on free loopback ports, and tonic's client over its own HTTP/2
//! channel. Every RPC of the four services, grpc.health.v1, server reflection, the bad input
//! each answered with a clear status, gateway tokens, event streams that resume across restarts
//! and the metrics of gRPC calls.

#[path = "grpc/streams.rs"]
mod streams;
#[path = "grpc/support.rs"]
mod support;

use aurigraph_proto::v11::{
    self, ConsensusStatusRequest, GetAccountRequest, GetTransactionRequest, HealthRequest,
    InfoRequest, ResultCode, StatsRequest, StreamTransactionEventsRequest,
    SubmitTransactionRequest, TransactionStatus, ValidatorsRequest,
};
use aurigraph_testkit::{genesis, keys, new_token, transfer, Node, FUNDS};
use aurigraph_wire::record::{address_of, Record, Transfer};
use aurigraph_wire::shard::shard_of;
use ed25519_dalek::SigningKey;
use futures::StreamExt;
use std::collections::HashSet;
use support::*;
use tonic::metadata::MetadataValue;
use tonic::Code;
use tonic_health::pb::{health_check_response::ServingStatus, HealthCheckRequest};
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

#[test]
fn transfers_are_submitted_one_by_one_and_in_batches_and_looked_up() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(4);
    let node = Node::start(dir.path(), Some(&genesis(&keys, SHARDS)));
    runtime().block_on(async {
        let mut c = Clients::connect(&node.grpc_url()).await;
        let (a, b) = (&keys[0], address_of(&keys[1]));
        let submit = |r: &Record, detach: bool| SubmitTransactionRequest {
            transfer: Some(message(r)),
            detach,
        };
        // One transfer, answered once decided.
        let first = transfer(a, b, 100, 1);
        let reply =
            c.tx.submit_transaction(submit(&first, false))
                .await
                .unwrap();
        let outcome = reply.into_inner().outcome.unwrap();
        assert_eq!(outcome.tx_hash, first.tx_hash().0);
        assert_eq!(outcome.status, TransactionStatus::Confirmed as i32);
        assert_eq!(outcome.result, ok());
        assert_eq!(outcome.shard, shard_of(&address_of(a), SHARDS));
        assert!(outcome.block_number > 0, "{outcome:?}");
        // Again: decided by the ledger already; its first answer stays.
        let again =
            c.tx.submit_transaction(submit(&first, false))
                .await
                .unwrap();
        let again = again.into_inner().outcome.unwrap();
        assert_eq!(again.status, TransactionStatus::Rejected as i32);
        assert_eq!(again.result, Some(ResultCode::NonceReplayed as i32));
        let looked_up =
            c.tx.get_transaction(GetTransactionRequest {
                tx_hash: first.tx_hash().0.to_vec(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(looked_up.outcome.as_ref(), Some(&outcome));
        assert_eq!(looked_up.source, "recent");
        // A bad signature: refused before consensus.
        let forged = Transfer {
            nonce: 2,
            ..first.transfer()
        }
        .with_signature(&[7; 64]);
        let refused =
            c.tx.submit_transaction(submit(&forged, false))
                .await
                .unwrap();
        let refused = refused.into_inner().outcome.unwrap();
        assert_eq!(refused.result, Some(ResultCode::BadSignature as i32));
        assert_eq!(
            (refused.status, refused.block_number),
            (TransactionStatus::Rejected as i32, 0)
        );
        // Detached: PENDING at once, decided later.
        let detached = transfer(a, b, 5, 3);
        let pending =
            c.tx.submit_transaction(submit(&detached, true))
                .await
                .unwrap();
        let pending = pending.into_inner().outcome.unwrap();
        assert_eq!(pending.tx_hash, detached.tx_hash().0);
        assert_eq!(pending.status, TransactionStatus::Pending as i32);
        assert_eq!((pending.result, pending.block_number), (None, 0));
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let got =
                c.tx.get_transaction(GetTransactionRequest {
                    tx_hash: detached.tx_hash().0.to_vec(),
                })
                .await
                .unwrap()
                .into_inner()
                .outcome
                .unwrap();
            if got.status != TransactionStatus::Pending as i32 {
                assert_eq!(got.status, TransactionStatus::Confirmed as i32, "{got:?}");
                assert_eq!(got.result, ok());
                break;
            }
            assert!(std::time::Instant::now() < deadline, "still PENDING");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_status(
            c.tx.get_transaction(GetTransactionRequest {
                tx_hash: vec![9; 32],
            })
            .await,
            Code::NotFound,
            "TRANSACTION_NOT_FOUND",
        );

        // A batch of messages: one outcome per transfer, in order; the request id echoed.
        let (s, t) = (&keys[2], address_of(&keys[3]));
        let records = [
            transfer(s, t, 10, 1),
            transfer(s, t, 0, 2),
            transfer(s, address_of(s), 10, 3),
            transfer(s, t, 11, 4),
        ];
        let mut request = messages(&records);
        request.request_id = 41;
        let reply = c.tx.submit_batch(request).await.unwrap().into_inner();
        assert_eq!((reply.accepted, reply.rejected, reply.pending), (2, 2, 0));
        assert_eq!(reply.request_id, 41);
        assert!(reply.compact_results.is_empty());
        let results: Vec<Option<i32>> = reply.outcomes.iter().map(|o| o.result).collect();
        let code = |c: ResultCode| Some(c as i32);
        assert_eq!(
            results,
            [
                ok(),
                code(ResultCode::ZeroAmount),
                code(ResultCode::SelfTransfer),
                ok()
            ]
        );
        for (o, r) in reply.outcomes.iter().zip(&records) {
            assert_eq!(o.tx_hash, r.tx_hash().0);
        }
        // The binary batch, answered compactly: 9 bytes per transfer.
        let records: Vec<Record> = (5..25).map(|n| transfer(s, t, 1, n)).collect();
        let mut request = compact(&records);
        request.request_id = 42;
        let reply = c.tx.submit_batch(request).await.unwrap().into_inner();
        assert_eq!(
            (reply.accepted, reply.rejected, reply.request_id),
            (20, 0, 42)
        );
        assert!(reply.outcomes.is_empty());
        let compact = aurigraph_wire::compact::decode_compact_results_exact(
            &reply.compact_results,
            records.len(),
        )
        .unwrap();
        assert!(
            compact.iter().all(|&(code, block)| code == 0 && block > 0),
            "{compact:?}"
        );
        // Messages answered compactly too; a detached batch is PENDING.
        let records = [transfer(s, t, 1, 25), transfer(s, t, 1, 25)];
        let reply =
            c.tx.submit_batch(v11::SubmitBatchRequest {
                format: v11::ResultFormat::Compact as i32,
                ..messages(&records)
            })
            .await
            .unwrap()
            .into_inner();
        let compact =
            aurigraph_wire::compact::decode_compact_results_exact(&reply.compact_results, 2)
                .unwrap();
        assert_eq!(compact[0].0, 0);
        assert_eq!(compact[1].0, ResultCode::NonceReplayed as u8, "{compact:?}");
        let records: Vec<Record> = (26..30).map(|n| transfer(s, t, 1, n)).collect();
        let reply =
            c.tx.submit_batch(v11::SubmitBatchRequest {
                detach: true,
                ..binary(&records)
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((reply.pending, reply.accepted, reply.rejected), (4, 0, 0));
        assert!(reply
            .outcomes
            .iter()
            .all(|o| o.status == TransactionStatus::Pending as i32 && o.result.is_none()));

        // Every OK above moved its amount exactly once: 10 + 11 + 20 + 1 + 4 to t.
        wait_balance(&mut c.accounts, &t, FUNDS + 10 + 11 + 20 + 1 + 4).await;
    });
}

#[test]
fn node_consensus_account_health_and_reflection_services_answer() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(2);
    let node = Node::start(dir.path(), Some(&genesis(&keys, SHARDS)));
    let rt = runtime();
    rt.block_on(async {
        let mut c = Clients::connect(&node.grpc_url()).await;
        let sent = transfer(&keys[0], address_of(&keys[1]), 25, 1);
        submit_ok(&mut c.tx, &[sent]).await;

        let health = c.node.health(HealthRequest {}).await.unwrap().into_inner();
        assert_eq!(health.status, "UP", "{health:?}");
        let ledger = health.checks.iter().find(|c| c.name == "ledger");
        assert_eq!(ledger.map(|c| c.status.as_str()), Some("UP"), "{health:?}");
        let info = c.node.info(InfoRequest {}).await.unwrap().into_inner();
        assert_eq!((info.node_id, info.chain_id, info.shards), (1, 7, SHARDS));
        assert_eq!(info.cores, 2);
        assert!(info.assets.contains(&0), "{info:?}");
        assert_eq!(info.validators, [1]);
        assert!(!info.version.is_empty());
        let stats = c.node.stats(StatsRequest {}).await.unwrap().into_inner();
        assert_eq!(stats.node_id, 1);
        let performance = stats.performance.unwrap();
        assert!(performance.total_transactions >= 1, "{performance:?}");
        let consensus = stats.consensus.unwrap();
        assert_eq!((consensus.shards, consensus.shards_with_leader), (SHARDS, SHARDS));
        assert_eq!(consensus.validator_count, 1);

        let status = c
            .consensus
            .status(ConsensusStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!((status.node_id, status.cluster_size), (1, 1));
        assert_eq!(status.shards.len(), SHARDS as usize);
        let http = node.get("/api/v11/consensus/status").json();
        for shard in &status.shards {
            assert_eq!(shard.role, "LEADER", "{shard:?}");
            assert_eq!((shard.leader, shard.voters.as_slice()), (Some(1), &[1][..]));
            assert_eq!(shard.state_hash.len(), 16);
            assert!(shard.applied_index >= 1 && shard.commit_index >= shard.applied_index);
            let same = aurigraph_testkit::cluster::shard_status(&http, shard.shard).unwrap();
            assert_eq!(same["term"].as_u64(), Some(shard.term), "{same}");
        }
        let validators = c
            .consensus
            .validators(ValidatorsRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!((validators.node_id, validators.validator_count), (1, 1));
        let me = &validators.validators[0];
        assert!(me.self_ && me.node_id == 1 && me.status == "ACTIVE", "{me:?}");
        let mut led = me.leader_of.clone();
        led.sort_unstable();
        assert_eq!(led, (0..SHARDS).collect::<Vec<_>>());

        // Accounts: the same balance and nonce as over HTTP.
        let from = address_of(&keys[0]);
        let account = c
            .accounts
            .get_account(GetAccountRequest {
                address: from.0.to_vec(),
            })
            .await
            .unwrap()
            .into_inner();
        let over_http = node.get(&format!("/api/v11/accounts/{}", from.to_hex())).json();
        assert_eq!(account.nonce, 1);
        assert_eq!(over_http["nonce"].to_string().trim_matches('"'), "1");
        assert_eq!(
            over_http["balances"]["0"].as_str(),
            Some((FUNDS - 25).to_string().as_str())
        );
        assert_eq!(
            account.balances,
            [v11::Balance {
                asset: 0,
                amount: FUNDS - 25
            }]
        );

        // grpc.health.v1: the node and each service SERVING; an unknown one NOT_FOUND.
        for service in std::iter::once("").chain(aurigraph_proto::SERVICES.iter().copied()) {
            let check = HealthCheckRequest {
                service: service.into(),
            };
            let answer = c.health.check(check).await.unwrap().into_inner();
            assert_eq!(answer.status, ServingStatus::Serving as i32, "{service:?}");
        }
        let unknown = HealthCheckRequest {
            service: "aurigraph.v11.NoSuchService".into(),
        };
        assert_status(c.health.check(unknown).await, Code::NotFound, "");
        let watch = HealthCheckRequest {
            service: "aurigraph.v11.TransactionService".into(),
        };
        let mut watching = c.health.watch(watch).await.unwrap().into_inner();
        let first = tokio::time::timeout(WAIT, watching.message()).await.unwrap();
        assert_eq!(first.unwrap().unwrap().status, ServingStatus::Serving as i32);

        // Reflection: the services, and the file that defines TransactionService.
        let ask = |request: MessageRequest| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        };
        let requests = vec![
            ask(MessageRequest::ListServices(String::new())),
            ask(MessageRequest::FileContainingSymbol(
                "aurigraph.v11.TransactionService".into(),
            )),
            ask(MessageRequest::FileContainingSymbol("no.such.Symbol".into())),
        ];
        let answers: Vec<_> = c
            .reflection
            .server_reflection_info(futures::stream::iter(requests))
            .await
            .unwrap()
            .into_inner()
            .map(|a| a.unwrap().message_response.unwrap())
            .collect()
            .await;
        let MessageResponse::ListServicesResponse(list) = &answers[0] else {
            panic!("{:?}", answers[0]);
        };
        let listed: HashSet<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
        for name in aurigraph_proto::SERVICES.iter().copied().chain([
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]) {
            assert!(listed.contains(name), "{name} not in {listed:?}");
        }
        let MessageResponse::FileDescriptorResponse(files) = &answers[1] else {
            panic!("{:?}", answers[1]);
        };
        let files: Vec<prost_types::FileDescriptorProto> = files
            .file_descriptor_proto
            .iter()
            .map(|f| prost::Message::decode(f.as_slice()).unwrap())
            .collect();
        let defining = files
            .iter()
            .find(|f| f.service.iter().any(|s| s.name() == "TransactionService"))
            .expect("a file defines TransactionService");
        assert_eq!(defining.package(), "aurigraph.v11");
        let service = &defining.service[0];
        let methods: HashSet<&str> = service.method.iter().map(|m| m.name()).collect();
        let rpcs = [
            "SubmitTransaction",
            "SubmitBatch",
            "GetTransaction",
            "StreamTransactionEvents",
            "SubmitStream",
        ];
        assert_eq!(methods, HashSet::from(rpcs));
        let MessageResponse::ErrorResponse(error) = &answers[2] else {
            panic!("{:?}", answers[2]);
        };
        assert_eq!(error.error_code, Code::NotFound as i32);
        // v1alpha lists the same.
        let mut alpha = tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient::new(
            channel(&node.grpc_url()).await,
        );
        let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest::ListServices(
                    String::new(),
                ),
            ),
        };
        let mut answers = alpha
            .server_reflection_info(futures::stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let answer = answers.message().await.unwrap().unwrap();
        assert!(format!("{answer:?}").contains("aurigraph.v11.AccountService"));

        // The HTTP port answers gRPC too.
        let mut via_http =
            v11::node_service_client::NodeServiceClient::new(channel(&node.http_url()).await);
        let info = via_http.info(InfoRequest {}).await.unwrap().into_inner();
        assert_eq!(info.chain_id, 7);
    });
    // The calls are counted, by RPC and status.
    grpc_metric_line(&node, "/aurigraph.v11.NodeService/Info", "OK", 2.0);
    let submit_batch = "/aurigraph.v11.TransactionService/SubmitBatch";
    grpc_metric_line(&node, submit_batch, "OK", 1.0);
    // An address never seen is an empty account, as over HTTP (AccountService's contract).
    rt.block_on(async {
        let mut accounts = Clients::connect(&node.grpc_url()).await.accounts;
        let unknown = GetAccountRequest {
            address: vec![0xee; 32],
        };
        let empty = accounts.get_account(unknown).await.unwrap().into_inner();
        assert_eq!(empty.address, vec![0xee; 32]);
        assert!(empty.balances.is_empty(), "{empty:?}");
        assert_eq!(empty.nonce, 0);
    });
    let get_account = "/aurigraph.v11.AccountService/GetAccount";
    grpc_metric_line(&node, get_account, "OK", 2.0);
}

#[test]
fn bad_input_gets_a_clear_status_and_the_node_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(2);
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "body_bytes_max = 65536\n").unwrap();
    let node = Node::start_with_args(
        dir.path(),
        Some(&genesis(&keys, SHARDS)),
        aurigraph_testkit::free_port(),
        &["--config", config.to_str().unwrap()],
    );
    let good = transfer(&keys[0], address_of(&keys[1]), 3, 1);
    runtime().block_on(async {
        let mut c = Clients::connect(&node.grpc_url()).await;
        let info = "/aurigraph.v11.NodeService/Info";
        let submit = "/aurigraph.v11.TransactionService/SubmitTransaction";
        let reboot = "/aurigraph.v11.NodeService/Reboot";
        let mut unknown_method = String::new();
        // Bytes that are no message, a frame cut short, an unknown method.
        for (path, body, codes) in [
            (
                submit,
                frame(&[0xff; 24]),
                &[Code::InvalidArgument, Code::Internal][..],
            ),
            (
                submit,
                frame(&[0x0a, 0x80, 0x80]),
                &[Code::InvalidArgument, Code::Internal],
            ),
            (
                submit,
                frame(&[1; 64])[..20].to_vec(),
                &[Code::InvalidArgument, Code::Internal],
            ),
            (reboot, frame(&[]), &[Code::Unimplemented]),
        ] {
            let (status, message) = raw_call(node.grpc_port, path, body).await;
            if path == reboot {
                unknown_method = message.clone();
            }
            let status = status.map(Code::from_i32);
            assert!(
                status.is_some_and(|s| codes.contains(&s)),
                "{path}: {status:?} {message}"
            );
            assert!(!message.is_empty(), "{path}: the status says why");
            let (status, _) = raw_call(node.grpc_port, info, frame(&[])).await;
            assert_eq!(status, Some(0), "the node answers the next request");
        }
        // Byte fields of the wrong length.
        let short = |mut t: v11::Transfer, field: &str| {
            match field {
                "from" => t.from.truncate(31),
                "to" => t.to.truncate(31),
                _ => t.signature.truncate(63),
            }
            t
        };
        for (field, api) in [
            ("from", "INVALID_ADDRESS"),
            ("to", "INVALID_ADDRESS"),
            ("signature", "INVALID_SIGNATURE"),
        ] {
            let request = SubmitTransactionRequest {
                transfer: Some(short(message(&good), field)),
                detach: false,
            };
            assert_status(
                c.tx.submit_transaction(request).await,
                Code::InvalidArgument,
                api,
            );
            let mut batch = messages(&[good]);
            if let Some(v11::submit_batch_request::Body::Transfers(t)) = &mut batch.body {
                t.transfers[0] = short(message(&good), field);
            }
            assert_status(c.tx.submit_batch(batch).await, Code::InvalidArgument, api);
        }
        let address = GetAccountRequest {
            address: vec![1; 31],
        };
        assert_status(
            c.accounts.get_account(address).await,
            Code::InvalidArgument,
            "INVALID_ADDRESS",
        );
        let hash = GetTransactionRequest {
            tx_hash: vec![1; 33],
        };
        assert_status(
            c.tx.get_transaction(hash).await,
            Code::InvalidArgument,
            "INVALID_TX_HASH",
        );
        let missing = SubmitTransactionRequest {
            transfer: None,
            detach: false,
        };
        assert_status(
            c.tx.submit_transaction(missing).await,
            Code::InvalidArgument,
            "",
        );
        // Unknown enum values, an empty or unreadable batch, COMPACT with detach.
        let bad_format = v11::SubmitBatchRequest {
            format: 99,
            ..binary(&[good])
        };
        assert_status(
            c.tx.submit_batch(bad_format).await,
            Code::InvalidArgument,
            "",
        );
        assert_status(
            c.tx.submit_batch(messages(&[])).await,
            Code::InvalidArgument,
            "",
        );
        let garbage = v11::SubmitBatchRequest {
            body: Some(v11::submit_batch_request::Body::Batch(vec![3; 100].into())),
            ..Default::default()
        };
        assert_status(
            c.tx.submit_batch(garbage).await,
            Code::InvalidArgument,
            "INVALID_BATCH",
        );
        let detached_compact = v11::SubmitBatchRequest {
            detach: true,
            ..compact(&[good])
        };
        assert_status(
            c.tx.submit_batch(detached_compact).await,
            Code::InvalidArgument,
            "",
        );
        for request in [
            StreamTransactionEventsRequest {
                start: 99,
                ..Default::default()
            },
            StreamTransactionEventsRequest {
                account: vec![1; 31],
                ..Default::default()
            },
            StreamTransactionEventsRequest {
                shards: vec![SHARDS],
                ..Default::default()
            },
        ] {
            let status = final_status(c.tx.stream_transaction_events(request.clone()).await).await;
            assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "{request:?}: {status:?}"
            );
        }
        // Past body_bytes_max (64 KiB here): RESOURCE_EXHAUSTED, as unary and in a stream.
        let big: Vec<Record> = (1..=500)
            .map(|n| transfer(&keys[1], address_of(&keys[0]), 1, n))
            .collect();
        let status = c.tx.submit_batch(binary(&big)).await;
        assert_status(status, Code::ResourceExhausted, "PAYLOAD_TOO_LARGE");
        let opened =
            c.tx.submit_stream(futures::stream::iter([binary(&big)]))
                .await;
        let status = final_status(opened).await;
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        // Nothing of it was taken; the node goes on.
        assert_all_ok(
            &c.tx
                .submit_batch(binary(&[good]))
                .await
                .unwrap()
                .into_inner(),
            &[good],
        );
        assert_all_ok(
            &c.tx
                .submit_batch(binary(&big[..100]))
                .await
                .unwrap()
                .into_inner(),
            &big[..100],
        );
        // The refusal of an unknown method names it (grpc-message is percent-encoded).
        assert!(
            unknown_method.contains("NodeService/Reboot"),
            "names the path: {unknown_method}"
        );
    });
    assert!(
        node.log_text().lines().all(|l| !l.contains("panicked")),
        "{}",
        node.log_text()
    );
}

#[test]
fn gateway_tokens_move_custodial_accounts_unsigned_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(3);
    let mut g = genesis(&keys, SHARDS);
    g.controllers
        .insert(address_of(&keys[0]), "acme".to_string());
    let tokens = dir.path().join("tokens.json");
    let acme = new_token(&tokens, "gateway", "acme");
    let nobody = new_token(&tokens, "gateway", "nobody");
    let admin = new_token(&tokens, "admin", "ops");
    let node = Node::start_with_args(
        dir.path(),
        Some(&g),
        aurigraph_testkit::free_port(),
        &["--tokens", tokens.to_str().unwrap()],
    );
    let to = address_of(&keys[2]);
    let unsigned = |from: &SigningKey, nonce: u64| {
        Transfer {
            chain_id: 7,
            from: address_of(from),
            to,
            asset: 0,
            amount: 5,
            nonce,
        }
        .with_signature(&[0; 64])
    };
    runtime().block_on(async {
        let mut c = Clients::connect(&node.grpc_url()).await;
        let with = |records: &[Record], authorization: &str| {
            let mut request = tonic::Request::new(binary(records));
            let value: MetadataValue<_> = authorization.parse().unwrap();
            request.metadata_mut().insert("authorization", value);
            request
        };
        let custodial = [unsigned(&keys[0], 1)];
        let refused = [
            (
                "Bearer 00".to_string(),
                Code::Unauthenticated,
                "UNAUTHORIZED",
            ),
            ("Bearer".to_string(), Code::Unauthenticated, "UNAUTHORIZED"),
            (
                "Basic YWNtZTphY21l".to_string(),
                Code::Unauthenticated,
                "UNAUTHORIZED",
            ),
            (
                format!("Bearer {nobody}"),
                Code::PermissionDenied,
                "FORBIDDEN",
            ),
            (
                format!("Bearer {admin}"),
                Code::PermissionDenied,
                "FORBIDDEN",
            ),
        ];
        for (authorization, code, api) in refused {
            let result = c.tx.submit_batch(with(&custodial, &authorization)).await;
            assert_status(result, code, api);
        }
        // Without a token the public rules apply: the custodial transfer needs its signature.
        let public =
            c.tx.submit_batch(binary(&custodial))
                .await
                .unwrap()
                .into_inner();
        assert_eq!(
            public.outcomes[0].result,
            Some(ResultCode::BadSignature as i32)
        );
        // acme's token: its account moves unsigned, another account does not.
        let records = [unsigned(&keys[0], 1), unsigned(&keys[1], 1)];
        let reply =
            c.tx.submit_batch(with(&records, &format!("Bearer {acme}")))
                .await
                .unwrap()
                .into_inner();
        let results: Vec<_> = reply.outcomes.iter().map(|o| o.result).collect();
        assert_eq!(results, [ok(), Some(ResultCode::BadSignature as i32)]);
        // A stream with acme's token: the same.
        let mut request =
            tonic::Request::new(futures::stream::iter([binary(&[unsigned(&keys[0], 2)])]));
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {acme}").parse().unwrap());
        let mut answers = c.tx.submit_stream(request).await.unwrap().into_inner();
        assert_eq!(answers.message().await.unwrap().unwrap().accepted, 1);
        // Exactly the two OK transfers moved.
        wait_balance(&mut c.accounts, &to, FUNDS + 10).await;
    });
    grpc_metric_line(
        &node,
        "/aurigraph.v11.TransactionService/SubmitBatch",
        "UNAUTHENTICATED",
        3.0,
    );
    grpc_metric_line(
        &node,
        "/aurigraph.v11.TransactionService/SubmitBatch",
        "PERMISSION_DENIED",
        2.0,
    );
}
