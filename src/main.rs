//! The `clientgate` binary: everything is in the library; see `cli`.

/// mimalloc rather than the system allocator: a decision allocates a few hundred small
/// values (Cedar's entities and context, the record, the answer), and glibc's malloc and
/// free took a fifth of the server's CPU under load (`benches/grpc.sh`, perf).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    clientgate::cli::main()
}
