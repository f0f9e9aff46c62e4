//! `pwt env`

use std::path::Path;

use anyhow::{Result, bail};
use pwt::{Environment, Project, Target};
use pwt_core::{render_dotenv, render_fish, render_sh};

use super::exit_codes;
use super::output::warn;

/// Print a worktree's environment as dotenv, sh, fish or JSON
///
/// Default: the worktree you are in.
///
///   eval "$(pwt env --format sh)"          # bash, zsh
///   pwt env --format fish | source         # fish
///   pwt env feature-a --format json | jq .DATABASE_URL
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct EnvArgs {
    /// Branch, slug or path (default: the current worktree).
    pub target: Option<String>,
    /// dotenv (KEY='value'), sh (export lines), fish (set -gx), or json (a flat object).
    #[arg(long, value_enum, default_value_t = EnvFormat::Dotenv)]
    pub format: EnvFormat,
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

/// The environment of `target`, or an error for an unmanaged worktree.
pub fn env_of(
    project: &Project,
    target: Option<&str>,
) -> Result<(Environment, std::path::PathBuf, String)> {
    let t = project.resolve(target)?;
    let env = project.environment(&t)?;
    match (t, env) {
        (Target::Leased(l), Some(env)) => Ok((env, l.path, l.slug.to_string())),
        (Target::Main(w), Some(env)) => Ok((env, w.root, "main".into())),
        (Target::Unmanaged(_), _) | (_, None) => {
            bail!("this worktree is not managed by pwt\n  hint: `pwt up` sets it up")
        }
    }
}

pub fn run(cwd: &Path, args: EnvArgs) -> Result<i32> {
    let opened = super::open(cwd)?;
    // The repository's [env] is in what it gives: approved first.
    let gate = super::trust::Gate {
        commands: false,
        env: true,
    };
    super::trust::ensure(cwd, &opened, false, gate)?;
    let (env, _, slug) = env_of(&opened.project, args.target.as_deref())?;
    match args.format {
        EnvFormat::Dotenv => {
            let (text, skipped) = render_dotenv(&env, &slug, "");
            for (var, why) in skipped {
                warn(&format!(
                    "{var} left out: {why}, so no dotenv quoting reads it the same everywhere; use --format json or sh"
                ));
            }
            print!("{text}");
        }
        EnvFormat::Sh => print!("{}", render_sh(&env)),
        EnvFormat::Fish => print!("{}", render_fish(&env)),
        EnvFormat::Json => println!("{}", serde_json::to_string_pretty(&env)?),
    }
    Ok(exit_codes::OK)
}
