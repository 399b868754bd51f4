//! The deployment files: the systemd unit passes `systemd-analyze verify` (with no warning),
//! and the node speaks systemd's notify protocol as the unit expects (`Type=notify`,
//! `WatchdogSec=`): READY=1 once it serves, WATCHDOG=1 while its cores make progress,
//! STOPPING=1 at SIGTERM.

use aurigraph_testkit::{aurigraph_bin, http_request};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/systemd/aurigraph.service"
);

/// `systemd-analyze verify` of the unit with its binary path pointing at `bin`: the exit
/// status and everything it printed.
fn verify(unit_text: &str, bin: &Path, dir: &Path) -> (bool, String) {
    let unit = dir.join("aurigraph.service");
    let text = unit_text.replace("/usr/local/bin/aurigraph", bin.to_str().unwrap());
    std::fs::write(&unit, text).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (Debian package systemd; tests/run installs it)");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

#[test]
fn the_service_unit_passes_systemd_analyze_verify_without_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(UNIT).unwrap();
    let (ok, printed) = verify(&unit, &aurigraph_bin(), dir.path());
    assert!(ok && printed.trim().is_empty(), "{printed}");
    // The check sees a mistake (an unknown key is only a warning, hence the empty output).
    let broken = unit.replace("Restart=on-failure", "Restart=on-failure\nRestartEvery=5s");
    let (_, printed) = verify(&broken, &aurigraph_bin(), dir.path());
    assert!(printed.contains("RestartEvery"), "{printed}");
    for key in [
        "Type=notify",
        "WatchdogSec=",
        "LimitMEMLOCK=infinity",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "Restart=on-failure",
    ] {
        assert!(unit.contains(key), "the unit lacks {key}");
    }
}

#[test]
fn the_node_tells_systemd_it_is_ready_alive_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = aurigraph_testkit::free_port();
    let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
    let mut child = std::process::Command::new(aurigraph_bin())
        .args(["node", "--cores", "2", "--http-addr"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--grpc-addr")
        .arg(format!(
            "127.0.0.1:{}",
            aurigraph_testkit::ports::pick_ports(1)
        ))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut seen: Vec<String> = Vec::new();
    let wait_for = |what: &str, seen: &mut Vec<String>| {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut buf = [0u8; 512];
        while Instant::now() < deadline {
            if let Ok(n) = socket.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                let found = message.lines().any(|l| l == what);
                seen.push(message);
                if found {
                    return;
                }
            }
        }
        panic!("no {what} from the node; got {seen:?}");
    };
    wait_for("READY=1", &mut seen);
    // Ready means serving.
    let health = http_request(port, "GET", "/api/v11/health", None, &[]).unwrap();
    assert_eq!(health.status, 200);
    // Pings every half period (200 ms) while the cores beat.
    wait_for("WATCHDOG=1", &mut seen);
    wait_for("WATCHDOG=1", &mut seen);
    // SIGTERM: the node says it is stopping, then exits 0.
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill(2) with our own child's pid and a valid signal number.
    let killed = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(killed, 0);
    wait_for("STOPPING=1", &mut seen);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(seen[0].contains("READY=1"), "READY=1 came first: {seen:?}");
}

/// The local stack of `deploy/compose/` (Docker Compose), checked without Docker: its services
/// and every file they mount, the image's Dockerfile, each validator's configuration through
/// the node's own loader (with the peer certificates and tokens that the stack's `setup`
/// service makes, made by the same script), the published ports, Prometheus's targets, and
/// `promtool check config` on the stack's Prometheus configuration.
mod compose {
    use aurigraph_api::config::{NodeArgs, NodeConfig};
    use aurigraph_testkit::{aurigraph_bin, on_path};
    use aurigraph_wire::genesis::Genesis;
    use aurigraph_wire::record::address_of;
    use serde_json::{json, Value};
    use std::collections::{BTreeMap, BTreeSet};
    use std::net::Ipv4Addr;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// The validators' services; validator-N has node id N.
    const VALIDATORS: [&str; 3] = ["validator-1", "validator-2", "validator-3"];
    /// The other services of the stack.
    const OTHERS: [&str; 6] = [
        "setup",
        "postgres",
        "redis",
        "prometheus",
        "alertmanager",
        "grafana",
    ];

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the repository root")
            .canonicalize()
            .unwrap()
    }

    fn compose_dir() -> PathBuf {
        repo().join("deploy/compose")
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// A YAML file as JSON, with its aliases and merge keys (`<<`) applied as Compose applies
    /// them.
    fn yaml(path: &Path) -> Value {
        let mut value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&read(path))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        value
            .apply_merge()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::to_value(value).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn stack() -> Value {
        yaml(&compose_dir().join("compose.yaml"))
    }

    fn services(stack: &Value) -> &serde_json::Map<String, Value> {
        stack["services"]
            .as_object()
            .expect("compose.yaml: services")
    }

    fn service<'a>(stack: &'a Value, name: &str) -> &'a Value {
        let found = &stack["services"][name];
        assert!(found.is_object(), "compose.yaml has no service {name}");
        found
    }

    /// A list of strings (none when absent).
    fn strings(value: &Value) -> Vec<String> {
        match value {
            Value::Null => Vec::new(),
            Value::Array(items) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .unwrap_or_else(|| panic!("{item} is not a string"))
                        .to_string()
                })
                .collect(),
            other => panic!("{other} is not a list"),
        }
    }

    /// One entry of a service's `volumes`, in the short syntax `SOURCE:TARGET[:ro]`.
    struct Mount {
        source: String,
        target: String,
        read_only: bool,
    }

    impl Mount {
        /// A file or folder of the repository, not a named volume.
        fn is_bind(&self) -> bool {
            self.source.starts_with('.') || self.source.starts_with('/')
        }

        /// The bind mount's source on this machine (relative paths are relative to the
        /// compose file's folder).
        fn host_path(&self) -> PathBuf {
            compose_dir().join(&self.source)
        }
    }

    fn mounts(service: &Value) -> Vec<Mount> {
        strings(&service["volumes"])
            .iter()
            .map(|entry| {
                let parts: Vec<&str> = entry.split(':').collect();
                let (source, target, read_only) = match parts[..] {
                    [source, target] => (source, target, false),
                    [source, target, "ro"] => (source, target, true),
                    [source, target, "rw"] => (source, target, false),
                    _ => panic!("volume {entry:?}: expected SOURCE:TARGET[:ro]"),
                };
                Mount {
                    source: source.to_string(),
                    target: target.to_string(),
                    read_only,
                }
            })
            .collect()
    }

    /// `(host IP, host port, container port)` of each entry of a service's `ports`.
    fn published(service: &Value) -> Vec<(String, u16, u16)> {
        strings(&service["ports"])
            .iter()
            .map(|entry| {
                let parts: Vec<&str> = entry.split(':').collect();
                let [ip, host, container] = parts[..] else {
                    panic!("port {entry:?}: expected HOST_IP:HOST_PORT:CONTAINER_PORT");
                };
                let port = |text: &str| -> u16 {
                    text.parse()
                        .unwrap_or_else(|e| panic!("port {entry:?}: {e}"))
                };
                (ip.to_string(), port(host), port(container))
            })
            .collect()
    }

    /// A container path under `root`.
    fn inside(root: &Path, container_path: &str) -> PathBuf {
        assert!(
            container_path.starts_with('/'),
            "{container_path}: a container path is absolute"
        );
        root.join(container_path.trim_start_matches('/'))
    }

    fn copy(from: &Path, to: &Path) {
        if from.is_dir() {
            std::fs::create_dir_all(to).unwrap();
            for entry in std::fs::read_dir(from).unwrap() {
                let entry = entry.unwrap();
                copy(&entry.path(), &to.join(entry.file_name()));
            }
        } else {
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(from, to)
                .unwrap_or_else(|e| panic!("{} -> {}: {e}", from.display(), to.display()));
        }
    }

    /// Lays out under `root` the files a service's container sees: each file or folder it
    /// bind-mounts at its target, and each named volume's content from `volumes` (an empty
    /// folder for a volume not there).
    fn lay_out(service: &Value, root: &Path, volumes: &BTreeMap<String, PathBuf>) {
        for mount in mounts(service) {
            let target = inside(root, &mount.target);
            if mount.is_bind() {
                copy(&mount.host_path(), &target);
            } else if let Some(content) = volumes.get(&mount.source) {
                copy(content, &target);
            } else {
                std::fs::create_dir_all(&target).unwrap();
            }
        }
    }

    /// Runs the `setup` service's entrypoint as its container would (its paths under `root`,
    /// the `aurigraph` binary of this build on the PATH); returns the folder of each named
    /// volume it writes.
    fn run_setup(stack: &Value, root: &Path) -> BTreeMap<String, PathBuf> {
        let setup = service(stack, "setup");
        lay_out(setup, root, &BTreeMap::new());
        let entrypoint = strings(&setup["entrypoint"]);
        let (program, args) = entrypoint
            .split_first()
            .expect("the setup service's entrypoint");
        let args: Vec<PathBuf> = args
            .iter()
            .map(|arg| {
                if arg.starts_with('/') {
                    inside(root, arg)
                } else {
                    PathBuf::from(arg)
                }
            })
            .collect();
        let bin = aurigraph_bin();
        let path = format!(
            "{}:{}",
            bin.parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new(program)
            .args(&args)
            .env("PATH", path)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            out.status.success(),
            "setup ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        mounts(setup)
            .into_iter()
            .filter(|m| !m.is_bind())
            .map(|m| (m.source.clone(), inside(root, &m.target)))
            .collect()
    }

    /// The validator's configuration file as mounted (its `--config`): the container path
    /// and the file in the repository.
    fn validator_config(validator: &Value) -> (String, PathBuf) {
        let command = strings(&validator["command"]);
        assert_eq!(
            command.first().map(String::as_str),
            Some("node"),
            "{command:?}"
        );
        let target = command
            .windows(2)
            .find(|pair| pair[0] == "--config")
            .map(|pair| pair[1].clone())
            .unwrap_or_else(|| panic!("{command:?}: no --config"));
        let source = mounts(validator)
            .into_iter()
            .find(|m| m.target == target)
            .unwrap_or_else(|| panic!("{target} is not mounted"))
            .host_path();
        (target, source)
    }

    /// The port of a `HOST:PORT` key of a validator's TOML configuration.
    fn config_port(file: &Path, key: &str) -> u16 {
        let config: toml::Table = toml::from_str(&read(file)).unwrap();
        let addr: std::net::SocketAddr = config[key]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no {key}", file.display()))
            .parse()
            .unwrap();
        addr.port()
    }

    fn ipv4(value: &Value) -> Ipv4Addr {
        value
            .as_str()
            .unwrap_or_else(|| panic!("{value} is not an address"))
            .parse()
            .unwrap()
    }

    /// Whether `ip` is in `subnet` (`A.B.C.D/N`).
    fn in_subnet(ip: Ipv4Addr, subnet: &str) -> bool {
        let (base, bits) = subnet.split_once('/').expect("A.B.C.D/N");
        let base: Ipv4Addr = base.parse().unwrap();
        let bits: u32 = bits.parse().unwrap();
        let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
        u32::from(ip) & mask == u32::from(base) & mask
    }

    #[test]
    fn the_stack_has_every_service_and_every_file_it_mounts() {
        let stack = stack();
        for name in VALIDATORS.iter().chain(&OTHERS) {
            service(&stack, name);
        }
        let volumes: BTreeSet<&str> = stack["volumes"]
            .as_object()
            .map(|v| v.keys().map(String::as_str).collect())
            .unwrap_or_default();
        for (name, svc) in services(&stack) {
            for mount in mounts(svc) {
                if mount.is_bind() {
                    let path = mount.host_path();
                    assert!(
                        path.exists(),
                        "{name} mounts {}: not in the repository",
                        mount.source
                    );
                    assert!(
                        path.canonicalize().unwrap().starts_with(repo()),
                        "{name} mounts {} from outside the repository",
                        mount.source
                    );
                    assert!(
                        mount.read_only,
                        "{name} mounts {} writable: the stack must not write into the checkout",
                        mount.source
                    );
                } else {
                    assert!(
                        volumes.contains(mount.source.as_str()),
                        "{name} mounts the volume {}, which compose.yaml does not declare",
                        mount.source
                    );
                }
            }
            if let Some(deps) = svc["depends_on"].as_object() {
                for dep in deps.keys() {
                    service(&stack, dep);
                }
            }
        }

        // The aurigraph services: one image, built from deploy/docker/Dockerfile at the
        // repository root.
        for name in VALIDATORS.iter().chain(&["setup"]) {
            let svc = service(&stack, name);
            assert_eq!(svc["image"], "aurigraph:local", "{name}");
            let context = compose_dir().join(svc["build"]["context"].as_str().unwrap());
            assert_eq!(
                context.canonicalize().unwrap(),
                repo(),
                "{name}: build context"
            );
            let dockerfile = context.join(svc["build"]["dockerfile"].as_str().unwrap());
            assert_eq!(
                dockerfile.canonicalize().unwrap(),
                repo().join("deploy/docker/Dockerfile"),
                "{name}: Dockerfile"
            );
        }
        // The validators start after the setup and once PostgreSQL and Redis answer, and get
        // what io_uring needs.
        for name in VALIDATORS {
            let svc = service(&stack, name);
            for (dep, condition) in [
                ("setup", "service_completed_successfully"),
                ("postgres", "service_healthy"),
                ("redis", "service_healthy"),
            ] {
                assert_eq!(svc["depends_on"][dep]["condition"], condition, "{name}");
                if condition == "service_healthy" {
                    assert!(service(&stack, dep)["healthcheck"].is_object(), "{dep}");
                }
            }
            assert_eq!(
                svc["ulimits"]["memlock"],
                json!({ "soft": -1, "hard": -1 }),
                "{name}: io_uring needs locked memory"
            );
            assert!(
                strings(&svc["security_opt"]).contains(&"seccomp=unconfined".to_string()),
                "{name}: Docker's default seccomp profile blocks io_uring"
            );
        }

        // Grafana: the dashboards provider of deploy/grafana reads the folder where
        // deploy/grafana/dashboards is mounted, and the datasource is the stack's Prometheus.
        let grafana = mounts(service(&stack, "grafana"));
        let provisioned = |target: &str| -> PathBuf {
            grafana
                .iter()
                .find(|m| m.target == target)
                .unwrap_or_else(|| panic!("grafana: nothing mounted at {target}"))
                .host_path()
                .canonicalize()
                .unwrap()
        };
        let providers = provisioned("/etc/grafana/provisioning/dashboards");
        assert_eq!(
            providers,
            repo().join("deploy/grafana/provisioning/dashboards")
        );
        let provider = yaml(&providers.join("aurigraph.yml"));
        let folder = provider["providers"][0]["options"]["path"]
            .as_str()
            .unwrap();
        assert_eq!(
            provisioned(folder),
            repo().join("deploy/grafana/dashboards"),
            "grafana: the dashboards provider reads {folder}"
        );
        let datasources = provisioned("/etc/grafana/provisioning/datasources");
        let prometheus_port = published(service(&stack, "prometheus"))[0].2;
        for entry in std::fs::read_dir(&datasources).unwrap() {
            let file = yaml(&entry.unwrap().path());
            for source in file["datasources"].as_array().unwrap() {
                assert_eq!(
                    source["url"],
                    format!("http://prometheus:{prometheus_port}"),
                    "grafana's datasource"
                );
            }
        }
    }

    #[test]
    fn the_image_builds_the_cli_binary_and_holds_only_it_run_as_a_user() {
        let dockerfile = read(&repo().join("deploy/docker/Dockerfile"));
        let instructions: Vec<&str> = dockerfile
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let stages: Vec<&str> = instructions
            .iter()
            .filter(|l| l.starts_with("FROM "))
            .copied()
            .collect();
        assert_eq!(
            stages,
            ["FROM rust:1-bookworm AS build", "FROM debian:bookworm-slim"]
        );
        // The package and binary it builds are the CLI's.
        let cli: toml::Table = toml::from_str(&read(&repo().join("cli/Cargo.toml"))).unwrap();
        let package = cli["package"]["name"].as_str().unwrap();
        let bin = cli["bin"][0]["name"].as_str().unwrap();
        assert!(
            dockerfile.contains(&format!(
                "cargo build --release --locked -p {package} --bin {bin}"
            )),
            "the Dockerfile builds another package than {package}"
        );
        // The runtime stage: the binary alone, run by a user that is not root.
        let runtime: Vec<&str> = instructions
            .iter()
            .skip_while(|l| **l != "FROM debian:bookworm-slim")
            .copied()
            .collect();
        let copies: Vec<&str> = runtime
            .iter()
            .filter(|l| l.starts_with("COPY") || l.starts_with("ADD"))
            .copied()
            .collect();
        assert_eq!(
            copies,
            [format!(
                "COPY --from=build /usr/local/bin/{bin} /usr/local/bin/{bin}"
            )]
        );
        let user = runtime
            .iter()
            .find_map(|l| l.strip_prefix("USER "))
            .expect("the runtime stage sets a USER");
        assert!(!["root", "0"].contains(&user.trim()), "USER {user}");
        assert!(runtime.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{bin}\"]").as_str()));
        // The build context leaves the build outputs and the history out.
        let ignored = read(&repo().join("deploy/docker/Dockerfile.dockerignore"));
        for path in ["target", ".git"] {
            assert!(
                ignored.lines().any(|l| l.trim() == path),
                "{path} is not ignored"
            );
        }
    }

    #[test]
    fn every_validator_configuration_loads_through_the_nodes_own_loader() {
        let stack = stack();
        let dir = tempfile::tempdir().unwrap();
        let setup_root = dir.path().join("setup");
        let volumes = run_setup(&stack, &setup_root);
        let shared = volumes
            .get("stack")
            .expect("the setup service writes the stack volume");
        // A second `up` keeps what the first made.
        let ca = read(&shared.join("peer-certs/ca.pem"));
        let tokens = read(&shared.join("tokens.json"));
        run_setup(&stack, &setup_root);
        assert_eq!(read(&shared.join("peer-certs/ca.pem")), ca);
        assert_eq!(read(&shared.join("tokens.json")), tokens);

        // The ports the image EXPOSEs.
        let exposed: Vec<u16> = read(&repo().join("deploy/docker/Dockerfile"))
            .lines()
            .filter_map(|l| l.trim().strip_prefix("EXPOSE "))
            .flat_map(|ports| ports.split_whitespace().map(|p| p.parse::<u16>().unwrap()))
            .collect();
        let network = &stack["networks"]["default"]["ipam"]["config"][0];
        let subnet = network["subnet"].as_str().expect("the network's subnet");
        let dynamic = network["ip_range"]
            .as_str()
            .expect("the network's ip_range");
        let address =
            |name: &str| ipv4(&service(&stack, name)["networks"]["default"]["ipv4_address"]);
        let postgres = &service(&stack, "postgres")["environment"];
        let mut genesis_files = BTreeSet::new();
        let mut data_volumes = BTreeSet::new();
        for (i, name) in VALIDATORS.iter().enumerate() {
            let id = i as u64 + 1;
            let svc = service(&stack, name);
            let root = dir.path().join(name);
            lay_out(svc, &root, &volumes);
            let (config_target, config_source) = validator_config(svc);
            let args = NodeArgs {
                config: Some(inside(&root, &config_target)),
                ..Default::default()
            };
            let config = NodeConfig::resolve(&args).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(config.node_id, id, "{name}");

            // A cluster of three over mutual TLS, at the service's fixed addresses.
            let own = address(name);
            assert!(
                in_subnet(own, subnet) && !in_subnet(own, dynamic),
                "{name}: {own}"
            );
            assert_eq!(config.peer_addr.map(|a| a.ip()), Some(own.into()), "{name}");
            let peers: BTreeMap<u64, std::net::IpAddr> =
                config.peers.iter().map(|(id, a)| (*id, a.ip())).collect();
            let others: BTreeMap<u64, std::net::IpAddr> = VALIDATORS
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(j, other)| (j as u64 + 1, address(other).into()))
                .collect();
            assert_eq!(peers, others, "{name}: peers");
            assert!(
                config.peer_tls.is_some(),
                "{name}: peer links are mutual TLS"
            );

            // Its HTTP, gRPC and admin ports are published (and exposed by the image), and the
            // health check asks the HTTP one.
            let ports: Vec<u16> = published(svc).iter().map(|p| p.2).collect();
            let http = config.http_addr.port();
            assert!(
                ports.contains(&http),
                "{name}: port {http} is not published"
            );
            let grpc = config.grpc_addr.port();
            assert_ne!(grpc, http, "{name}: gRPC has a port of its own");
            assert!(
                ports.contains(&grpc),
                "{name}: gRPC port {grpc} is not published"
            );
            for port in [http, grpc] {
                assert!(
                    exposed.contains(&port),
                    "{name}: the image does not EXPOSE {port}"
                );
            }
            let admin = config.admin_addr.expect("an admin listener").port();
            assert!(
                ports.contains(&admin),
                "{name}: port {admin} is not published"
            );
            let health = strings(&svc["healthcheck"]["test"]).join(" ");
            assert!(
                health.contains(&format!("/dev/tcp/127.0.0.1/{http}")),
                "{name}: {health}"
            );

            // The genesis is mounted; the data directory is a volume of its own.
            let genesis = config.genesis.as_deref().expect("a genesis");
            let mounted = |path: &Path| {
                mounts(svc)
                    .into_iter()
                    .find(|m| Path::new(&m.target) == path)
                    .unwrap_or_else(|| panic!("{name}: nothing mounted at {}", path.display()))
            };
            genesis_files.insert(mounted(genesis).host_path().canonicalize().unwrap());
            let data = mounted(&config.data_dir);
            assert!(!data.is_bind(), "{name}: the data directory is a volume");
            data_volumes.insert(data.source);

            // The archive is the postgres service, with its credentials.
            let url = config.archive_url.as_deref().expect("archive_url");
            let fields: BTreeMap<&str, &str> = url
                .split_whitespace()
                .filter_map(|f| f.split_once('='))
                .collect();
            assert_eq!(fields.get("host"), Some(&"postgres"), "{url}");
            assert!(published(service(&stack, "postgres"))
                .iter()
                .any(|p| p.2.to_string() == fields["port"]));
            for (field, variable) in [
                ("user", "POSTGRES_USER"),
                ("password", "POSTGRES_PASSWORD"),
                ("dbname", "POSTGRES_DB"),
            ] {
                assert_eq!(
                    postgres[variable], fields[field],
                    "{name}: archive_url {field}"
                );
            }
            // The Redis sink is the redis service.
            let file: toml::Table = toml::from_str(&read(&config_source)).unwrap();
            assert_eq!(
                file["redis_url"].as_str(),
                Some("redis://redis:6379/"),
                "{name}"
            );
            assert!(published(service(&stack, "redis"))
                .iter()
                .any(|p| p.2 == 6379));
        }
        assert_eq!(
            genesis_files.len(),
            1,
            "one genesis for all: {genesis_files:?}"
        );
        assert_eq!(data_volumes.len(), VALIDATORS.len(), "{data_volumes:?}");

        // The genesis is as the node writes it, and funds the development key beside it.
        let path = genesis_files.first().unwrap();
        let text = read(path);
        let genesis =
            Genesis::from_json(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let shards = genesis
            .shards
            .expect("the stack's genesis fixes the shard count");
        assert_eq!(
            text,
            genesis.to_canonical_json(shards),
            "{}",
            path.display()
        );
        let key = aurigraph_wire::keyfile::parse_key(
            &read(&compose_dir().join("dev-key.json")),
            "deploy/compose/dev-key.json",
        )
        .unwrap();
        assert!(
            genesis
                .allocations
                .iter()
                .any(|a| a.address == address_of(&key) && a.amount > 0),
            "the genesis does not fund deploy/compose/dev-key.json"
        );
    }

    #[test]
    fn published_ports_are_on_the_hosts_loopback_and_do_not_collide() {
        let stack = stack();
        let mut taken: BTreeMap<u16, String> = BTreeMap::new();
        for (name, svc) in services(&stack) {
            for (ip, host, _) in published(svc) {
                assert_eq!(
                    ip, "127.0.0.1",
                    "{name} publishes port {host} beyond loopback"
                );
                if let Some(other) = taken.insert(host, name.clone()) {
                    panic!("{name} and {other} both publish port {host}");
                }
            }
        }
        for name in VALIDATORS {
            // HTTP, gRPC and admin.
            assert!(published(service(&stack, name)).len() >= 3, "{name}");
        }
    }

    #[test]
    fn prometheus_scrapes_the_three_validators_and_promtool_accepts_its_configuration() {
        let stack = stack();
        let prometheus = service(&stack, "prometheus");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("prometheus");
        lay_out(prometheus, &root, &BTreeMap::new());
        let command = strings(&prometheus["command"]);
        let target = command
            .iter()
            .find_map(|a| a.strip_prefix("--config.file="))
            .expect("prometheus: --config.file");
        let config_path = inside(&root, target);
        let config = yaml(&config_path);

        // The layout of deploy/prometheus/prometheus.yml: same jobs, settings and rule files.
        let reference = yaml(&repo().join("deploy/prometheus/prometheus.yml"));
        let jobs = |c: &Value| -> Vec<Value> {
            c["scrape_configs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|job| job["job_name"].clone())
                .collect()
        };
        assert_eq!(jobs(&config), jobs(&reference));
        assert_eq!(config["global"], reference["global"]);
        assert_eq!(config["rule_files"], reference["rule_files"]);
        let job = |c: &Value, name: &str| -> Value {
            c["scrape_configs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|job| job["job_name"] == name)
                .cloned()
                .unwrap()
        };
        let aurigraph = job(&config, "aurigraph");
        let bare = job(&reference, "aurigraph");
        assert_eq!(aurigraph["metrics_path"], bare["metrics_path"]);
        assert_eq!(aurigraph["scheme"], bare["scheme"]);

        // Every validator service at its HTTP port, labelled with its node id.
        let mut targets: BTreeMap<String, Value> = BTreeMap::new();
        for group in aurigraph["static_configs"].as_array().unwrap() {
            for t in strings(&group["targets"]) {
                targets.insert(t, group["labels"]["validator"].clone());
            }
        }
        let expected: BTreeMap<String, Value> = VALIDATORS
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let (_, config) = validator_config(service(&stack, name));
                let port = config_port(&config, "http_addr");
                (format!("{name}:{port}"), json!((i + 1).to_string()))
            })
            .collect();
        assert_eq!(targets, expected);

        // The rules are deploy/prometheus/alerts.yml, mounted where the configuration names
        // them.
        let config_dir = Path::new(target).parent().unwrap();
        for rules in strings(&config["rule_files"]) {
            let at = config_dir.join(&rules);
            let mount = mounts(prometheus)
                .into_iter()
                .find(|m| Path::new(&m.target) == at)
                .unwrap_or_else(|| panic!("prometheus: {} is not mounted", at.display()));
            assert_eq!(
                mount.host_path().canonicalize().unwrap(),
                repo().join("deploy/prometheus/alerts.yml")
            );
        }

        // Alerts go to the alertmanager service, whose configuration routes them to a receiver
        // it defines.
        let alertmanagers =
            strings(&config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]);
        let alertmanager = service(&stack, "alertmanager");
        let am_port = published(alertmanager)[0].2;
        assert_eq!(alertmanagers, [format!("alertmanager:{am_port}")]);
        let am_root = dir.path().join("alertmanager");
        lay_out(alertmanager, &am_root, &BTreeMap::new());
        let am_target = strings(&alertmanager["command"])
            .iter()
            .find_map(|a| a.strip_prefix("--config.file=").map(str::to_string))
            .expect("alertmanager: --config.file");
        let am_path = inside(&am_root, &am_target);
        let am_config = yaml(&am_path);
        let receivers: Vec<&Value> = am_config["receivers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["name"])
            .collect();
        assert!(
            receivers.contains(&&am_config["route"]["receiver"]),
            "{am_config}"
        );

        // promtool checks the configuration and the rules it loads, as Prometheus would see them.
        let checks = [
            (
                "promtool",
                vec!["check".into(), "config".into(), config_path],
            ),
            ("amtool", vec!["check-config".into(), am_path]),
        ];
        for (tool, args) in checks {
            let Some(program) = on_path(tool) else {
                let shown: Vec<_> = args.iter().map(|a| a.display().to_string()).collect();
                eprintln!(
                    "{tool} is not on the PATH: `{tool} {}` not run",
                    shown.join(" ")
                );
                continue;
            };
            let out = Command::new(&program).args(&args).output().unwrap();
            assert!(
                out.status.success(),
                "{tool} {args:?}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
