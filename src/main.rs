fn main() -> std::process::ExitCode {
    keygate::cli::main()
}
