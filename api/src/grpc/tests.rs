//! The router against the ledger double, over a real HTTP/2 connection: a tonic client on a
//! tokio runtime of the test's own, the server on a glommio executor.

use crate::http::routes::tests::signed;
use crate::http::HttpSettings;
use aurigraph_proto::v11;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use tonic::transport::Channel;
use tonic::Code;

/// A server with the fake ledger (small limits); its address, settings and executor.
fn start() -> (SocketAddr, HttpSettings, glommio::ExecutorJoinHandle<()>) {
    let mut settings = HttpSettings::new("127.0.0.1:0".parse().unwrap());
    settings.batch_transfers_max = 4;
    settings.body_bytes_max = 4096;
    crate::http::server::tests::start(settings)
}

/// Runs `test` with a channel to the server at `addr`, on a tokio runtime of its own.
pub(crate) fn with_channel<F: std::future::Future<Output = ()>>(
    addr: SocketAddr,
    test: impl FnOnce(Channel) -> F,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        test(channel).await;
    });
}

fn transfer_message(r: &aurigraph_engine::record::Record) -> v11::Transfer {
    v11::Transfer {
        from: r.from().0.to_vec(),
        to: r.to().0.to_vec(),
        asset: r.asset(),
        amount: r.amount(),
        nonce: r.nonce(),
        chain_id: Some(r.chain_id()),
        signature: r.signature().to_vec(),
    }
}

#[test]
fn the_router_answers_every_kind_of_rpc_and_refuses_bad_input_with_clear_statuses() {
    let (addr, settings, handle) = start();
    with_channel(addr, |channel| async move {
        let mut tx =
            v11::transaction_service_client::TransactionServiceClient::new(channel.clone());

        // One transfer, decided.
        let record = signed(1, 10);
        let answer = tx
            .submit_transaction(v11::SubmitTransactionRequest {
                transfer: Some(transfer_message(&record)),
                detach: false,
            })
            .await
            .unwrap()
            .into_inner();
        let outcome = answer.outcome.unwrap();
        assert_eq!(outcome.tx_hash, record.tx_hash().0.to_vec());
        assert_eq!(outcome.status, v11::TransactionStatus::Confirmed as i32);
        assert_eq!(outcome.result, Some(v11::ResultCode::Ok as i32));
        assert_eq!(outcome.block_number, 5);

        // A binary batch with compact results: the HTTP API's bytes.
        let records = [signed(2, 10), signed(3, 0)];
        let batch = aurigraph_wire::batch::encode_batch(&records);
        let answer = tx
            .submit_batch(v11::SubmitBatchRequest {
                body: Some(v11::submit_batch_request::Body::Batch(batch.into())),
                format: v11::ResultFormat::Compact as i32,
                request_id: 42,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (answer.accepted, answer.rejected, answer.request_id),
            (1, 1, 42)
        );
        assert_eq!(answer.compact_results.len(), 18);
        assert_eq!(answer.compact_results[9], v11::ResultCode::ZeroAmount as u8);

        // Bad input: a 31-byte address, an unknown enum value, too many transfers, a message
        // over the node's size limit, an RPC that does not exist.
        let mut short = transfer_message(&record);
        short.from.pop();
        let status = tx
            .submit_transaction(v11::SubmitTransactionRequest {
                transfer: Some(short),
                detach: false,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status
                .message()
                .contains("transfer.from must be 32 bytes, not 31"),
            "{status:?}"
        );
        assert_eq!(
            status.metadata().get("aurigraph-error-code").unwrap(),
            "INVALID_ADDRESS"
        );
        let status = tx
            .submit_batch(v11::SubmitBatchRequest {
                body: Some(v11::submit_batch_request::Body::Transfers(v11::Transfers {
                    transfers: vec![transfer_message(&record)],
                })),
                format: 99,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("format 99"), "{status:?}");
        let five: Vec<v11::Transfer> = (1..=5).map(|n| transfer_message(&signed(n, 1))).collect();
        let status = tx
            .submit_batch(v11::SubmitBatchRequest {
                body: Some(v11::submit_batch_request::Body::Transfers(v11::Transfers {
                    transfers: five,
                })),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert_eq!(
            status.metadata().get("aurigraph-error-code").unwrap(),
            "TOO_MANY_TRANSFERS"
        );
        let status = tx
            .submit_batch(v11::SubmitBatchRequest {
                body: Some(v11::submit_batch_request::Body::Batch(
                    vec![0u8; 5000].into(),
                )),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

        // A bidirectional stream: answers in request order.
        let requests = (10u8..14).map(|n| v11::SubmitBatchRequest {
            body: Some(v11::submit_batch_request::Body::Transfers(v11::Transfers {
                transfers: vec![transfer_message(&signed(n, 1))],
            })),
            request_id: u64::from(n),
            ..Default::default()
        });
        let mut answers = tx
            .submit_stream(futures::stream::iter(requests))
            .await
            .unwrap()
            .into_inner();
        let mut ids = Vec::new();
        while let Some(answer) = answers.message().await.unwrap() {
            assert_eq!(answer.accepted, 1);
            ids.push(answer.request_id);
        }
        assert_eq!(ids, [10, 11, 12, 13]);

        // Node, consensus, account, health, reflection.
        let mut node = v11::node_service_client::NodeServiceClient::new(channel.clone());
        let info = node.info(v11::InfoRequest {}).await.unwrap().into_inner();
        assert_eq!(
            (info.chain_id, info.shards, info.validators),
            (7, 2, vec![1])
        );
        let health = node
            .health(v11::HealthRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(health.status, "UP");
        assert_eq!(health.checks[0].name, "ledger");
        let mut consensus =
            v11::consensus_service_client::ConsensusServiceClient::new(channel.clone());
        let status = consensus
            .status(v11::ConsensusStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(status.shards.len(), 2);
        assert_eq!(status.shards[0].state_hash.len(), 16);
        let mut grpc_health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        let serving = grpc_health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "aurigraph.v11.TransactionService".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            serving.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
        let unknown = grpc_health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "no.such.Service".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound);
        let mut reflection =
            tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
                channel.clone(),
            );
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let asks = [
            MessageRequest::ListServices(String::new()),
            MessageRequest::FileContainingSymbol(
                "aurigraph.v11.TransactionService.SubmitBatch".into(),
            ),
        ]
        .map(|ask| tonic_reflection::pb::v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(ask),
        });
        let mut replies = reflection
            .server_reflection_info(futures::stream::iter(asks))
            .await
            .unwrap()
            .into_inner();
        match replies
            .message()
            .await
            .unwrap()
            .unwrap()
            .message_response
            .unwrap()
        {
            MessageResponse::ListServicesResponse(list) => {
                assert!(list
                    .service
                    .iter()
                    .any(|s| s.name == "aurigraph.v11.AccountService"));
            }
            other => panic!("{other:?}"),
        }
        match replies
            .message()
            .await
            .unwrap()
            .unwrap()
            .message_response
            .unwrap()
        {
            MessageResponse::FileDescriptorResponse(files) => {
                let first: prost_reflect::prost_types::FileDescriptorProto =
                    prost::Message::decode(files.file_descriptor_proto[0].as_slice()).unwrap();
                assert_eq!(first.name(), "aurigraph/v11/transactions.proto");
                assert_eq!(files.file_descriptor_proto.len(), 2, "with common.proto");
            }
            other => panic!("{other:?}"),
        }
    });
    // The figures count the calls by RPC and status.
    let h = settings.metrics.histograms();
    let count = |rpc: &str, status: &str| {
        h.grpc_calls
            .iter()
            .find(|c| c.rpc == rpc && c.status == status)
            .map_or(0, |c| c.count)
    };
    assert_eq!(
        count("/aurigraph.v11.TransactionService/SubmitBatch", "OK"),
        1
    );
    assert_eq!(
        count(
            "/aurigraph.v11.TransactionService/SubmitBatch",
            "INVALID_ARGUMENT"
        ),
        1
    );
    assert_eq!(
        count(
            "/aurigraph.v11.TransactionService/SubmitBatch",
            "RESOURCE_EXHAUSTED"
        ),
        2
    );
    assert_eq!(
        count(
            "/aurigraph.v11.TransactionService/SubmitTransaction",
            "INVALID_ARGUMENT"
        ),
        1
    );
    settings.draining.store(true, Ordering::SeqCst);
    handle.join().unwrap();
}
