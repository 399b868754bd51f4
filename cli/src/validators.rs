//! `aurigraph validators add|promote|remove`: membership changes on every shard, through the
//! validators' admin endpoint (run by `aurigraph_client::membership`; docs/replication.md walks
//! through adding a validator).

use aurigraph_client::membership::{self, MembershipError, MembershipStep};

/// Membership changes of the cluster's validators.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum ValidatorsCommand {
    /// Add a validator as a learner of every shard (start it with `aurigraph node --join`
    /// first); it catches up from the leaders' logs or snapshots.
    Add {
        /// The new validator's node id.
        #[arg(long, value_name = "N")]
        id: u64,
        /// The new validator's base peer address (IP:PORT; core c uses PORT + c).
        #[arg(long, value_name = "IP:PORT")]
        peer_addr: String,
        #[command(flatten)]
        nodes: Nodes,
    },
    /// Promote a learner to voter in every shard, once it has caught up.
    Promote {
        /// The learner's node id.
        #[arg(long, value_name = "N")]
        id: u64,
        #[command(flatten)]
        nodes: Nodes,
    },
    /// Remove a validator from every shard's group.
    Remove {
        /// The validator's node id.
        #[arg(long, value_name = "N")]
        id: u64,
        #[command(flatten)]
        nodes: Nodes,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct Nodes {
    /// HTTP base URLs of the cluster's validators (every shard's leader must be among them).
    #[arg(long, value_name = "URL,...", value_delimiter = ',', required = true)]
    pub nodes: Vec<String>,
    /// A file holding an admin token (`aurigraph token new --role admin` prints one; every
    /// validator's tokens file must list it).
    #[arg(
        long,
        env = "AURIGRAPH_ADMIN_TOKEN_FILE",
        value_name = "FILE",
        required = true
    )]
    pub token_file: std::path::PathBuf,
}

/// Runs the command.
pub fn run(command: ValidatorsCommand) -> Result<(), MembershipError> {
    let (step, nodes) = match command {
        ValidatorsCommand::Add {
            id,
            peer_addr,
            nodes,
        } => (MembershipStep::Add { id, peer_addr }, nodes),
        ValidatorsCommand::Promote { id, nodes } => (MembershipStep::Promote { id }, nodes),
        ValidatorsCommand::Remove { id, nodes } => (MembershipStep::Remove { id }, nodes),
    };
    let token = aurigraph_client::http::read_token_file(&nodes.token_file, "--token-file")
        .map_err(MembershipError::Token)?;
    membership::run(&step, &nodes.nodes, &token)
}
