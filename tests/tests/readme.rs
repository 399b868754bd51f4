//! The README's "Run a node and send a transfer" section, run as a new user runs it, so that the
//! README cannot drift from the product.
//!
//! The commands are read from the section's fenced code blocks in `README.md`, not copied here,
//! and each runs with `bash` in a fresh temporary working directory: relative paths (the default
//! data directory `./aurigraph-data`, `alice.json`), the default ports (HTTP 127.0.0.1:9003,
//! gRPC 127.0.0.1:9004), `curl` and `jq` as the README uses them. The only departures from typing
//! the commands by hand:
//!
//! - `cargo build ...`: the test checks that the command names the package of the `aurigraph`
//!   binary, takes the binary from `aurigraph_testkit::aurigraph_bin` (built in the profile the
//!   tests run in, so `cargo test` does not wait for a release build; `AURIGRAPH_BIN` names
//!   another) and links it at `./target/release/aurigraph` in the working directory, where the
//!   commands expect it.
//! - A command ending in `&` (the node) runs in the background; like a person waiting for the
//!   node's start-up log, the test then waits until the node answers `GET /api/v11/health`.
//! - Placeholders of the curl-only example (`<64 hex>`, `<128 hex>`) are filled in: Alice (funded
//!   by the section's first transfer) sends to the development key, signed by this test over the
//!   104-byte message of the contract (`docs/api.md`), independently of the product's code.
//!
//! Needs `curl` and `jq` (`tests/run` installs them) and the ports 9003 and 9004 free.

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

const SECTION: &str = "## Run a node and send a transfer";
const HTTP_PORT: u16 = 9003;
const GRPC_PORT: u16 = 9004;
const NODE_URL: &str = "http://127.0.0.1:9003";
const DOMAIN_TAG: &[u8; 16] = b"AURIGRAPH-TX-V1\0";

#[test]
fn readme_run_a_node_and_send_a_transfer() {
    for tool in ["curl", "jq"] {
        require_tool(tool);
    }
    for port in [HTTP_PORT, GRPC_PORT] {
        require_free_port(port);
    }
    let root = workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("read README.md");
    let blocks = section_code_blocks(&readme, SECTION);
    assert!(
        !blocks.is_empty(),
        "README.md has no fenced code blocks under {SECTION:?}"
    );

    let work = tempfile::tempdir().expect("temporary working directory");
    let mut run = Session {
        root,
        work: work.path().to_path_buf(),
        node: None,
        node_command: None,
        seen: Seen::default(),
        alice: None,
        transfer_amount: None,
    };
    for block in &blocks {
        for command in commands(block) {
            run.command(&command);
        }
    }
    let seen = &run.seen;
    for (what, done) in [
        ("builds the binary (`cargo build`)", seen.build),
        (
            "starts a node in the background (`aurigraph node &`)",
            seen.node,
        ),
        ("creates a key (`aurigraph keygen`)", seen.keygen),
        ("sends a transfer (`aurigraph transfer`)", seen.transfer),
        ("reads an account (`curl .../accounts/...`)", seen.account),
        ("posts a transfer with curl alone", seen.post),
    ] {
        assert!(done, "the README's section {SECTION:?} no longer {what}");
    }

    // The same node command again, on the data directory it created: a restart recovers it
    // (relative paths on an existing directory), with Alice's account as the section left it.
    let alice = run.alice.clone().unwrap();
    let before = run.get_json(&format!("/api/v11/accounts/{alice}"));
    run.stop_node();
    let node_command = run.node_command.clone().unwrap();
    run.start_node(&node_command);
    let after = run.get_json(&format!("/api/v11/accounts/{alice}"));
    assert_eq!(after, before, "Alice's account after a restart");
    run.stop_node();
}

#[derive(Default)]
struct Seen {
    build: bool,
    node: bool,
    keygen: bool,
    transfer: bool,
    account: bool,
    post: bool,
}

struct Session {
    root: PathBuf,
    work: PathBuf,
    node: Option<Node>,
    /// The command that started the node (without its `&`).
    node_command: Option<String>,
    seen: Seen,
    /// Alice's address, once `keygen` has printed it.
    alice: Option<String>,
    /// `--amount` of the section's `aurigraph transfer`.
    transfer_amount: Option<u64>,
}

impl Session {
    fn command(&mut self, command: &str) {
        if command.starts_with("cargo build") {
            self.build(command);
        } else if let Some(background) = command.strip_suffix('&') {
            self.start_node(background.trim());
        } else if command.starts_with("curl") && command.contains(" -d ") {
            self.post(command);
        } else {
            let output = self.bash(command);
            self.check(command, &output);
        }
    }

    /// `cargo build [--release] -p PACKAGE`: builds that package's `aurigraph` binary and links
    /// it where the README's commands run it.
    fn build(&mut self, command: &str) {
        let words: Vec<&str> = command.split_whitespace().collect();
        let package = words
            .windows(2)
            .find(|w| w[0] == "-p" || w[0] == "--package")
            .map(|w| w[1])
            .unwrap_or_else(|| panic!("`{command}`: no -p PACKAGE"));
        let owner = package_of_the_binary(&self.root);
        assert_eq!(
            package, owner,
            "`{command}` builds package {package}, but the `aurigraph` binary is in {owner}"
        );
        let binary = aurigraph_testkit::aurigraph_bin();
        let release = self.work.join("target/release");
        std::fs::create_dir_all(&release).unwrap();
        std::os::unix::fs::symlink(&binary, release.join("aurigraph")).unwrap();
        self.seen.build = true;
    }

    fn start_node(&mut self, command: &str) {
        assert!(
            self.node.is_none(),
            "`{command} &`: a node is running already"
        );
        assert!(
            command.contains("aurigraph node"),
            "`{command} &`: the only background command expected is the node"
        );
        let log_path = self.work.join("node.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new("bash")
            .arg("-c")
            .arg(format!("exec {command}"))
            .current_dir(&self.work)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start bash");
        let mut node = Node {
            child,
            log: log_path,
        };
        node.wait_ready();
        if !self.seen.node {
            // The README's comment: the first start's log names the funded development key it
            // wrote into the data directory.
            let log_text = node.log_text();
            assert!(
                log_text.contains("aurigraph-data/dev-key.json"),
                "the node's log does not name the development key ./aurigraph-data/dev-key.json:\n{log_text}"
            );
            assert!(self.work.join("aurigraph-data/dev-key.json").is_file());
        }
        self.node = Some(node);
        self.node_command = Some(command.to_string());
        self.seen.node = true;
    }

    /// The curl-only example: placeholders filled, signed here, posted by the README's command.
    fn post(&mut self, command: &str) {
        let alice = self
            .alice
            .clone()
            .expect("the curl example comes after `aurigraph keygen` created Alice");
        let alice_key = read_key(&self.work.join("alice.json"));
        let dev = read_key(&self.work.join("aurigraph-data/dev-key.json"));
        let dev_address = hex::encode(dev.verifying_key().as_bytes());
        // From Alice (funded by the first transfer) back to the development key.
        let mut filled =
            command
                .replacen("<64 hex>", &alice, 1)
                .replacen("<64 hex>", &dev_address, 1);
        assert!(
            !filled.contains("<64 hex>"),
            "`{command}`: more than two addresses to fill in"
        );
        let body_text = quoted_body(&filled.replace("<128 hex>", &"0".repeat(128)));
        let body: Value = serde_json::from_str(&body_text)
            .unwrap_or_else(|e| panic!("the README's JSON body is not JSON ({e}):\n{body_text}"));
        let chain_id = match body.get("chainId") {
            Some(id) => id.as_u64().expect("chainId"),
            None => self.get_json("/api/v11/info")["chainId"]
                .as_u64()
                .expect("info.chainId"),
        } as u32;
        let number = |name: &str| -> u64 {
            match &body[name] {
                Value::String(s) => s.parse().unwrap(),
                Value::Number(n) => n.as_u64().unwrap(),
                Value::Null => 0,
                other => panic!("{name}: {other}"),
            }
        };
        let (asset, amount, nonce) = (number("asset") as u32, number("amount"), number("nonce"));
        if let Some(sent) = self.transfer_amount {
            assert!(
                amount <= sent,
                "the curl example sends {amount}, more than the {sent} Alice received"
            );
        }
        let mut message = Vec::with_capacity(104);
        message.extend_from_slice(DOMAIN_TAG);
        message.extend_from_slice(&chain_id.to_le_bytes());
        message.extend_from_slice(&hex_32(&alice));
        message.extend_from_slice(&hex_32(&dev_address));
        message.extend_from_slice(&asset.to_le_bytes());
        message.extend_from_slice(&amount.to_le_bytes());
        message.extend_from_slice(&nonce.to_le_bytes());
        assert_eq!(message.len(), 104);
        let signature = alice_key.sign(&message).to_bytes();
        filled = filled.replace("<128 hex>", &hex::encode(signature));
        assert!(!filled.contains('<'), "unfilled placeholder in `{filled}`");

        let output = self.bash(&filled);
        let reply = parse_json(&filled, &output);
        assert_eq!(reply["result"], "OK", "`{filled}` answered {reply}");
        assert_eq!(reply["status"], "CONFIRMED", "`{filled}` answered {reply}");
        let tx_hash = Sha256::new()
            .chain_update(&message)
            .chain_update(signature)
            .finalize();
        assert_eq!(
            reply["txHash"],
            hex::encode(tx_hash),
            "txHash is SHA-256 of the 104 bytes and the signature"
        );
        let account = self.get_json(&format!("/api/v11/accounts/{alice}"));
        assert_eq!(
            account["nonce"].to_string().trim_matches('"'),
            nonce.to_string(),
            "Alice's account after the curl transfer: {account}"
        );
        self.seen.post = true;
    }

    /// What the README promises of each command's output.
    fn check(&mut self, command: &str, output: &str) {
        if command.contains("aurigraph keygen") {
            let address = self.bash("jq -r .address alice.json").trim().to_string();
            assert!(
                address.len() == 64 && address.bytes().all(|b| b.is_ascii_hexdigit()),
                "alice.json's address: {address:?}"
            );
            assert!(
                output.contains(&address),
                "`{command}` does not print Alice's address {address}:\n{output}"
            );
            self.alice = Some(address);
            self.seen.keygen = true;
        } else if command.contains("aurigraph transfer") {
            let reply = parse_json(command, output);
            assert_eq!(reply["result"], "OK", "`{command}` answered {reply}");
            let words: Vec<&str> = command.split_whitespace().collect();
            self.transfer_amount = words
                .windows(2)
                .find(|w| w[0] == "--amount")
                .map(|w| w[1].parse().expect("--amount N"));
            self.seen.transfer = true;
        } else if command.starts_with("curl") && command.contains("/api/v11/accounts/") {
            let account = parse_json(command, output);
            let alice = self.alice.as_deref().expect("Alice's address");
            assert_eq!(account["address"], alice, "`{command}` answered {account}");
            if let Some(amount) = self.transfer_amount {
                assert_eq!(
                    account["balances"]["0"],
                    amount.to_string(),
                    "`{command}`: Alice's balance after the transfer: {account}"
                );
            }
            self.seen.account = true;
        }
    }

    /// Runs `command` with bash in the working directory; its stdout, or a panic that shows
    /// everything when it fails.
    fn bash(&mut self, command: &str) -> String {
        let output = Command::new("bash")
            .arg("-c")
            .arg(format!("set -eo pipefail\n{command}"))
            .current_dir(&self.work)
            .stdin(Stdio::null())
            .output()
            .expect("run bash");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            let node_log = self.node.as_ref().map(Node::log_text).unwrap_or_default();
            panic!(
                "the README's command failed ({}):\n{command}\n--- stdout\n{stdout}\n--- stderr\n{}\n--- node log\n{node_log}",
                output.status,
                String::from_utf8_lossy(&output.stderr),
            );
        }
        stdout
    }

    fn get_json(&mut self, path: &str) -> Value {
        let command = format!("curl -sf {NODE_URL}{path}");
        let output = self.bash(&command);
        parse_json(&command, &output)
    }

    /// Stops the node as an operator would (SIGTERM) and expects a clean exit.
    fn stop_node(&mut self) {
        if let Some(mut node) = self.node.take() {
            let status = node.stop();
            assert!(
                status.success(),
                "the node did not stop cleanly on SIGTERM ({status}):\n{}",
                node.log_text()
            );
        }
    }
}

/// The background node; killed if the test fails before stopping it.
struct Node {
    child: Child,
    log: PathBuf,
}

impl Node {
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the node exited during start-up ({status}):\n{}",
                    self.log_text()
                );
            }
            let probe = Command::new("curl")
                .args(["-sf", "-o", "/dev/null"])
                .arg(format!("{NODE_URL}/api/v11/health"))
                .status()
                .expect("run curl");
            if probe.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the node did not answer {NODE_URL}/api/v11/health within 60 s:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return self.child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.log) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn require_tool(tool: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{tool}` is not installed, and the README's commands use it: run `tests/run` (it \
         installs what a fresh Debian 12 machine lacks) or `sudo apt-get install curl jq`"
    );
}

fn require_free_port(port: u16) {
    if let Err(e) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
        panic!(
            "port {port} on 127.0.0.1 is not free ({e}): this test runs the README as written, \
             and the README's node listens on the default ports 9003 (HTTP) and 9004 (gRPC); \
             stop whatever uses it (another aurigraph node?) and run the test again"
        );
    }
}

/// The repository root: the folder above this crate holding the workspace's README.md.
fn workspace_root() -> PathBuf {
    let mut dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    loop {
        if dir.join("README.md").is_file() && dir.join("Cargo.lock").is_file() {
            return dir.to_path_buf();
        }
        dir = dir
            .parent()
            .expect("README.md and Cargo.lock above the test crate");
    }
}

/// The package whose binary target is `aurigraph`, from `cargo metadata` (nothing is built).
fn package_of_the_binary(root: &Path) -> String {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(root)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo metadata");
    assert!(output.status.success(), "cargo metadata failed");
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    packages
        .iter()
        .find(|p| {
            p["targets"].as_array().is_some_and(|targets| {
                targets.iter().any(|t| {
                    t["name"] == "aurigraph"
                        && t["kind"].as_array().unwrap().contains(&"bin".into())
                })
            })
        })
        .and_then(|p| p["name"].as_str())
        .expect("a package with the binary `aurigraph`")
        .to_string()
}

/// The bodies of the fenced code blocks (```` ```sh ```` or plain) in the section that starts
/// with the line `heading`, up to the next heading of the same or a higher level.
fn section_code_blocks(readme: &str, heading: &str) -> Vec<String> {
    let mut lines = readme.lines().skip_while(|line| line.trim_end() != heading);
    assert!(
        lines.next().is_some(),
        "README.md has no section {heading:?}"
    );
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in lines {
        let fence = line.trim_start().starts_with("```");
        match current.as_mut() {
            None if fence => current = Some(String::new()),
            None if line.starts_with("# ") || line.starts_with("## ") => break,
            None => {}
            Some(_) if fence => blocks.push(current.take().unwrap()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    blocks
}

/// The commands of a shell block, as bash would split them: one per line, a line ending in `\`
/// continued on the next, a quoted argument running over several lines kept whole, comments
/// (`#` at the start of a word, outside quotes) dropped.
fn commands(block: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut chars = block.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                current.push(c);
            }
            (Some(_), c) => current.push(c),
            (None, '\'') | (None, '"') => {
                quote = Some(c);
                current.push(c);
            }
            (None, '\\') if chars.peek() == Some(&'\n') => {
                chars.next();
                current.push(' ');
            }
            (None, '#') if current.chars().last().is_none_or(char::is_whitespace) => {
                while chars.next_if(|&c| c != '\n').is_some() {}
            }
            (None, '\n') => {
                let command = current.trim();
                if !command.is_empty() {
                    commands.push(command.to_string());
                }
                current.clear();
            }
            (None, c) => current.push(c),
        }
    }
    assert!(quote.is_none(), "unterminated quote in block:\n{block}");
    let command = current.trim();
    if !command.is_empty() {
        commands.push(command.to_string());
    }
    commands
}

/// The single-quoted argument after ` -d ` (the JSON body of a curl command).
fn quoted_body(command: &str) -> String {
    let start = command
        .find(" -d '")
        .unwrap_or_else(|| panic!("`{command}`: no -d '<body>'"))
        + " -d '".len();
    let len = command[start..].find('\'').expect("closing quote");
    command[start..start + len].to_string()
}

fn parse_json(command: &str, output: &str) -> Value {
    serde_json::from_str(output)
        .unwrap_or_else(|e| panic!("`{command}` did not print JSON ({e}):\n{output}"))
}

fn read_key(path: &Path) -> SigningKey {
    let text = std::fs::read_to_string(path).unwrap();
    let file: Value = serde_json::from_str(&text).unwrap();
    let seed = file["secretKey"].as_str().expect("secretKey");
    SigningKey::from_bytes(&hex_32(seed))
}

fn hex_32(text: &str) -> [u8; 32] {
    hex::decode(text)
        .expect("hex")
        .try_into()
        .expect("32 bytes")
}
