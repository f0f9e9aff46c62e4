//! `pwt env`

use std::path::Path;

use anyhow::Result;
use pwt_core::{render_dotenv, render_fish, render_sh};

use crate::output::{Style, print_table, printable, warn};
use pwt::exit_code;

/// Print a worktree's environment as dotenv, sh, fish or JSON
///
/// Default: the worktree you are in.
///
///   eval "$(pwt env --format sh)"          # bash, zsh
///   pwt env --format fish | source         # fish
///   pwt env feature-a --format json | jq .DATABASE_URL
///   pwt env --explain                      # each variable with what it is
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct EnvArgs {
    /// Branch, slug or path (default: the current worktree).
    #[arg(value_parser = super::selector())]
    pub target: Option<pwt::Selector>,
    /// dotenv (KEY='value'), sh (export lines), fish (set -gx), or json (a flat object).
    #[arg(long, value_enum, default_value_t = EnvFormat::Dotenv)]
    pub format: EnvFormat,
    /// Say what each variable is (a table; with --format json, a list of name, value and
    /// about).
    #[arg(long)]
    pub explain: bool,
}

/// Renderings of an environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EnvFormat {
    /// What `.env.worktree` holds.
    Dotenv,
    /// POSIX shell `export` lines.
    Sh,
    /// fish `set -gx` lines.
    Fish,
    /// A flat JSON object of variable → value.
    Json,
}

pub fn run(cwd: &Path, args: EnvArgs) -> Result<i32> {
    let project = super::open(cwd)?;
    if args.explain {
        let vars = project.explained_environment(args.target.as_ref())?;
        if args.format == EnvFormat::Json {
            crate::output::print_json(&vars)?;
        } else {
            let rows: Vec<Vec<String>> = vars
                .iter()
                .map(|v| [&v.name, &v.value, &v.about].map(|s| printable(s)).to_vec())
                .collect();
            print_table(Style::stdout(), &["VARIABLE", "VALUE", "WHAT IT IS"], &rows);
        }
        return Ok(exit_code::OK);
    }
    let (worktree, env) = project.worktree_environment(args.target.as_ref())?;
    match args.format {
        EnvFormat::Dotenv => {
            let (text, skipped) = render_dotenv(&env, &worktree.slug, "");
            for (var, why) in skipped {
                warn(&format!(
                    "{var} left out: {why}, so no dotenv quoting reads it the same everywhere; use --format json or sh"
                ));
            }
            print!("{text}");
        }
        EnvFormat::Sh => print!("{}", render_sh(&env)),
        EnvFormat::Fish => print!("{}", render_fish(&env)),
        EnvFormat::Json => crate::output::print_json(&env)?,
    }
    Ok(exit_code::OK)
}
