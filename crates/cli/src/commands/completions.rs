//! `pwt completions`

use anyhow::Result;
use clap::CommandFactory as _;
use clap_complete::Shell;

use pwt::exit_code;

/// Print shell completions
///
///   pwt completions bash > ~/.local/share/bash-completion/completions/pwt
///   pwt completions zsh  > "${fpath[1]}/_pwt"
///   pwt completions fish > ~/.config/fish/completions/pwt.fish
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: Shell,
}

pub fn run(args: CompletionsArgs) -> Result<i32> {
    let mut cmd = crate::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "pwt", &mut std::io::stdout());
    Ok(exit_code::OK)
}
