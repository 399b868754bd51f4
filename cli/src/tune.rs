//! `aurigraph tune`: what this host should change for the node, and changing it.

use aurigraph_tuning::{Options, Report, State, EXIT_DIFFERS, EXIT_WRITE_FAILED};
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum TuneCommand {
    /// Report, per item, the current value, the recommended one and why: CPU governor and
    /// boost, clock source, transparent huge pages, locked-memory limit, kernel parameters
    /// (swappiness, map count, AIO contexts, listen and packet backlogs), each disk's I/O
    /// scheduler and merging, online discard on the data directory's file system, IRQs on the
    /// executors' cores, core isolation (advice for dedicated hosts). Reads only.
    ///
    /// Exit status: 0 when every item is as recommended (advice and unreadable items do not
    /// count), 3 when some item differs, 2 on a usage error.
    Check(TuneArgs),
    /// Apply what can change at runtime and differs, then print the persistent form of every
    /// item that differs (sysctl.d lines, udev rules, kernel parameters, systemd settings).
    /// A dry run unless --yes: prints what it would write and writes nothing.
    ///
    /// Exit status: 0 when every write succeeded (or in a dry run), 4 when one failed
    /// (usually: not root), 2 on a usage error.
    Apply {
        #[command(flatten)]
        args: TuneArgs,
        /// Write the changes (default: a dry run that writes nothing).
        #[arg(long)]
        yes: bool,
    },
}

#[derive(clap::Args, Debug)]
pub struct TuneArgs {
    /// The file tree to read and write instead of `/` (a copy of /proc and /sys, for tests
    /// and for checking another machine's snapshot).
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// Executor cores the node will run (`aurigraph node --cores`); default: every online CPU.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    cores: Option<u16>,
    /// The node's data directory (`aurigraph node --data-dir`), whose file system's mount
    /// options are checked (online discard).
    #[arg(
        long,
        env = "AURIGRAPH_DATA_DIR",
        value_name = "DIR",
        default_value = "./aurigraph-data"
    )]
    data_dir: PathBuf,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl TuneArgs {
    fn options(&self) -> Options {
        Options {
            root: self.root.clone(),
            cores: self.cores.map(usize::from),
            data_dir: Some(aurigraph_tuning::host_path(&self.data_dir)),
        }
    }
}

/// Runs the command; returns the exit status.
pub fn run(command: TuneCommand) -> u8 {
    match command {
        TuneCommand::Check(args) => {
            let report = aurigraph_tuning::check(&args.options());
            print_report(&report, args.json);
            if report.differs() {
                EXIT_DIFFERS as u8
            } else {
                0
            }
        }
        TuneCommand::Apply { args, yes } => {
            let options = args.options();
            let report = aurigraph_tuning::check(&options);
            let applied = aurigraph_tuning::apply(&options, &report, !yes);
            let mut failed = false;
            for a in &applied {
                let path = options.root.join(&a.write.path);
                match (&a.error, yes) {
                    (None, false) => {
                        println!("would write {:?} to {}", a.write.value, path.display())
                    }
                    (None, true) => println!("wrote {:?} to {}", a.write.value, path.display()),
                    (Some(error), _) => {
                        failed = true;
                        eprintln!("aurigraph: error: writing {:?}: {error}", a.write.value);
                    }
                }
            }
            if applied.is_empty() {
                println!("nothing to change at runtime");
            }
            let lasting: Vec<String> = report
                .findings
                .iter()
                .filter(|f| f.state == State::Differs)
                .filter_map(|f| f.persistent.as_ref().map(|p| format!("{}: {p}", f.item)))
                .collect();
            if !lasting.is_empty() {
                println!("\nto keep across reboots:");
                for line in lasting {
                    println!("  {line}");
                }
            }
            if !yes && !applied.is_empty() {
                println!("\ndry run: nothing written (--yes writes)");
            }
            if failed {
                EXIT_WRITE_FAILED as u8
            } else {
                0
            }
        }
    }
}

fn print_report(report: &Report, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).expect("a report serializes")
        );
        return;
    }
    println!(
        "executor CPUs: {}",
        aurigraph_tuning::format_cpu_list(&report.executor_cpus)
    );
    for f in &report.findings {
        let state = match f.state {
            State::Ok => "ok",
            State::Differs => "DIFFERS",
            State::Advice => "advice",
            State::Unknown => "unknown",
        };
        println!(
            "{state:<8} {:<22} {:<28} current {} | recommended {}",
            f.tuner, f.item, f.current, f.recommended
        );
        if f.state != State::Ok {
            println!("         why: {}", f.why);
        }
    }
}
