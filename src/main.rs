//! The `agentauth` binary: every command lives in the `agentauth-cli` crate.

fn main() -> std::process::ExitCode {
    agentauth_cli::main()
}
