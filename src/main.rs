//! The `clientgate` binary: everything is in the library; see `cli`.

fn main() -> std::process::ExitCode {
    clientgate::cli::main()
}
