//! Server reflection (`grpc.reflection.v1` and `v1alpha`): what the node serves, described by
//! the protos compiled into it, so that `grpcurl`-style tools work without the `.proto` files.
//!
//! Answered here rather than by tonic-reflection's server, which spawns a tokio task per
//! stream: the cores run glommio, not tokio. The messages are tonic-reflection's; the symbol
//! lookup is prost-reflect's.

use super::{GrpcBody, GrpcResponse};
use futures::stream::{BoxStream, StreamExt};
use hyper::Request;
use prost_reflect::{DescriptorPool, FileDescriptor};
use std::collections::BTreeSet;
use std::sync::LazyLock;
use tonic::{Status, Streaming};

pub const V1: &str = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
pub const V1ALPHA: &str = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
/// A reflection request's largest message: requests are names, small.
pub const MESSAGE_BYTES_MAX: usize = 64 << 10;

/// The services a `list_services` request names.
const LISTED: [&str; 7] = [
    "aurigraph.v11.TransactionService",
    "aurigraph.v11.NodeService",
    "aurigraph.v11.ConsensusService",
    "aurigraph.v11.AccountService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Every file the node serves a service of, decoded once.
static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    let mut pool = DescriptorPool::new();
    for set in [
        aurigraph_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ] {
        // The sets are compiled into the binary: one that does not decode is a build defect.
        pool.decode_file_descriptor_set(set)
            .expect("the compiled-in file descriptor sets decode");
    }
    pool
});

/// The file that defines `symbol` (a service, method, message, enum or extension).
fn file_of(symbol: &str) -> Option<FileDescriptor> {
    let pool = &*POOL;
    if let Some(s) = pool.get_service_by_name(symbol) {
        return Some(s.parent_file());
    }
    if let Some(m) = pool.get_message_by_name(symbol) {
        return Some(m.parent_file());
    }
    if let Some(e) = pool.get_enum_by_name(symbol) {
        return Some(e.parent_file());
    }
    if let Some(x) = pool.get_extension_by_name(symbol) {
        return Some(x.parent_file());
    }
    // A method (`package.Service.Method`) or a field (`package.Message.field`).
    let (parent, member) = symbol.rsplit_once('.')?;
    if let Some(s) = pool.get_service_by_name(parent) {
        return s
            .methods()
            .any(|m| m.name() == member)
            .then(|| s.parent_file());
    }
    let m = pool.get_message_by_name(parent)?;
    m.get_field_by_name(member).map(|_| m.parent_file())
}

/// `file` and every file it depends on, transitively, each encoded once (what a client needs
/// to build the descriptors).
fn with_dependencies(file: FileDescriptor) -> Vec<Vec<u8>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut stack = vec![file];
    while let Some(file) = stack.pop() {
        if seen.insert(file.name().to_owned()) {
            out.push(file.encode_to_vec());
            stack.extend(file.dependencies());
        }
    }
    out
}

/// One reflection answer per request, for the messages of one reflection version.
macro_rules! answer {
    ($name:ident, $version:ident) => {
        fn $name(
            request: tonic_reflection::pb::$version::ServerReflectionRequest,
        ) -> tonic_reflection::pb::$version::ServerReflectionResponse {
            use pb::server_reflection_request::MessageRequest;
            use pb::server_reflection_response::MessageResponse;
            use pb::{
                ErrorResponse, ExtensionNumberResponse, FileDescriptorResponse,
                ListServiceResponse, ServiceResponse,
            };
            use tonic_reflection::pb::$version as pb;
            let not_found = |what: String| {
                MessageResponse::ErrorResponse(ErrorResponse {
                    error_code: tonic::Code::NotFound as i32,
                    error_message: what,
                })
            };
            let files = |file: Option<FileDescriptor>, what: String| match file {
                Some(file) => MessageResponse::FileDescriptorResponse(FileDescriptorResponse {
                    file_descriptor_proto: with_dependencies(file),
                }),
                None => not_found(what),
            };
            let answer = match &request.message_request {
                Some(MessageRequest::ListServices(_)) => {
                    MessageResponse::ListServicesResponse(ListServiceResponse {
                        service: LISTED
                            .iter()
                            .map(|name| ServiceResponse {
                                name: (*name).to_owned(),
                            })
                            .collect(),
                    })
                }
                Some(MessageRequest::FileByFilename(name)) => files(
                    POOL.get_file_by_name(name),
                    format!("no file {name:?} on this node"),
                ),
                Some(MessageRequest::FileContainingSymbol(symbol)) => files(
                    file_of(symbol),
                    format!("no symbol {symbol:?} on this node"),
                ),
                Some(MessageRequest::FileContainingExtension(e)) => not_found(format!(
                    "no extension {} of {:?}: the node's protos define no extensions",
                    e.extension_number, e.containing_type
                )),
                Some(MessageRequest::AllExtensionNumbersOfType(name)) => {
                    match POOL.get_message_by_name(name) {
                        Some(_) => {
                            MessageResponse::AllExtensionNumbersResponse(ExtensionNumberResponse {
                                base_type_name: name.clone(),
                                extension_number: Vec::new(),
                            })
                        }
                        None => not_found(format!("no message type {name:?} on this node")),
                    }
                }
                None => MessageResponse::ErrorResponse(ErrorResponse {
                    error_code: tonic::Code::InvalidArgument as i32,
                    error_message: "the request names no message_request".into(),
                }),
            };
            pb::ServerReflectionResponse {
                valid_host: request.host.clone(),
                original_request: Some(request),
                message_response: Some(answer),
            }
        }
    };
}

answer!(answer_v1, v1);
answer!(answer_v1alpha, v1alpha);

/// A bidirectional stream answered message by message, in order, as it is read.
struct Answering<Req, Resp>(fn(Req) -> Resp);

impl<Req: Send + 'static, Resp: Send + 'static> tonic::server::StreamingService<Req>
    for Answering<Req, Resp>
{
    type Response = Resp;
    type ResponseStream = BoxStream<'static, Result<Resp, Status>>;
    type Future = std::future::Ready<Result<tonic::Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: tonic::Request<Streaming<Req>>) -> Self::Future {
        let answer = self.0;
        let answers = request.into_inner().map(move |r| r.map(answer)).boxed();
        std::future::ready(Ok(tonic::Response::new(answers)))
    }
}

/// Serves one reflection stream (either version).
pub async fn serve<T: GrpcBody>(request: Request<T>) -> GrpcResponse {
    let limit = MESSAGE_BYTES_MAX;
    if request.uri().path() == V1 {
        tonic::server::Grpc::new(tonic_prost::ProstCodec::default())
            .max_decoding_message_size(limit)
            .streaming(Answering(answer_v1), request)
            .await
    } else {
        tonic::server::Grpc::new(tonic_prost::ProstCodec::default())
            .max_decoding_message_size(limit)
            .streaming(Answering(answer_v1alpha), request)
            .await
    }
}
