//! Every env file pwt writes reads back the same in every real reader of it: bash, python-dotenv,
//! Docker Compose (v1's env-file parser), Node's dotenv, direnv's `dotenv` and mise, over
//! hostile values from branch names and `[env]`; none of them evaluates anything in a value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::TestEnv;

/// Values that readers like to interpret, each written into `[env]` literally.
pub(crate) const HOSTILE: &[&str] = &[
    "pa$$word$HOME",
    "feat/${HOME}",
    "${HOME:-default}",
    "$(touch pwned)",
    "`touch pwned`",
    "{{exec(command='touch pwned')}}",
    "{{x}}",
    "{% if %}",
    "{# c #}",
    "{% endraw %}",
    "it's",
    "say \"hi\"",
    "it's \"both\"",
    "it's $HOME",
    "back\\slash",
    "two\\\\backslashes",
    "ends\\",
    "\\n",
    "# not a comment",
    "x #y",
    " spaced ",
    "tab\there",
    "a=b",
    "ünïcødé ☃ 😀",
    "~/tilde",
    "$",
    "$$",
    "%PATH%",
    "a;b|c&d",
    "",
];

/// Branch names git accepts that readers would evaluate.
pub(crate) const BRANCHES: &[&str] = &[
    "feat/{{exec(command='touch${IFS}pwned')}}",
    "feat/$(touch${IFS}pwned)'\"`x`${HOME}",
];

/// An `[env]` table holding each of [`HOSTILE`] literally, as `H00`, `H01`, …
pub(crate) fn hostile_env_toml() -> String {
    let mut toml = String::from("[env]\n");
    for (i, v) in HOSTILE.iter().enumerate() {
        // minijinja's own raw block cannot hold `endraw`: that one is a string literal.
        let template = if v.contains("endraw") {
            format!("{{{{ {v:?} }}}}")
        } else {
            format!("{{% raw %}}{v}{{% endraw %}}")
        };
        toml.push_str(&format!("H{i:02} = '''{template}'''\n"));
    }
    toml
}

/// The values pwt may leave out of a file because that format cannot carry them alike for
/// every reader; all others must be in it.
fn may_leave_out(file: &str, value: &str) -> bool {
    match file {
        ".env.worktree" => {
            value.contains("${")
                || value.contains("\\\\")
                || value.ends_with('\\')
                || (value.contains('\'') && value.contains(['"', '$', '`', '\\']))
        }
        _ => value.contains("endraw"),
    }
}

/// The Python Debian's docker-compose (v1) runs on, with its `compose` package.
const COMPOSE_PYTHON: &str = "/usr/bin/python3";

struct Readers {
    python: PathBuf,
    node_modules: PathBuf,
    mise: PathBuf,
}

/// The readers .ci/run installs: python-dotenv in the Django venv, Node's dotenv and mise
/// from npm, direnv and docker-compose from Debian.
fn readers() -> Result<Readers, String> {
    let home = std::env::var_os("HOME").ok_or("no HOME")?;
    let cache = Path::new(&home).join(".cache/pwt-ci");
    let python = std::env::var_os("PWT_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache.join("django/bin/python"));
    let node_modules = std::env::var_os("PWT_TEST_READERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache.join("readers/node_modules"));
    let mise = node_modules.join(".bin/mise");
    let probe = |cmd: &mut Command, what: &str| -> Result<(), String> {
        match cmd.output() {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!("{what}: {}", String::from_utf8_lossy(&o.stderr))),
            Err(e) => Err(format!("{what}: {e}")),
        }
    };
    probe(
        Command::new(&python).args(["-c", "import dotenv"]),
        "python-dotenv",
    )?;
    probe(
        Command::new("node").arg("-e").arg(format!(
            "require({:?})",
            node_modules.join("dotenv").display().to_string()
        )),
        "node dotenv",
    )?;
    probe(Command::new(&mise).arg("--version"), "mise")?;
    probe(Command::new("direnv").arg("version"), "direnv")?;
    probe(
        Command::new(COMPOSE_PYTHON).args(["-c", "import compose.config.environment"]),
        "docker-compose (v1)",
    )?;
    Ok(Readers {
        python,
        node_modules,
        mise,
    })
}

/// Runs a reader in `dir` with a bare environment and parses the JSON object it prints.
fn read(t: &TestEnv, dir: &Path, program: &Path, args: &[&str]) -> BTreeMap<String, String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", t.home())
        .env("MISE_YES", "1")
        .env("MISE_TRUSTED_CONFIG_PATHS", dir)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{} printed no JSON ({e}):\n{}",
            program.display(),
            String::from_utf8_lossy(&out.stdout)
        )
    });
    v.as_object()
        .expect("object")
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

/// What each reader makes of the two files of the worktree at `dir`, by reader name.
fn all_readers(
    t: &TestEnv,
    r: &Readers,
    dir: &Path,
) -> Vec<(&'static str, &'static str, BTreeMap<String, String>)> {
    let dump = "import os, json; print(json.dumps(dict(os.environ)))";
    let bash = format!("set -a; . ./.env.worktree; set +a; exec python3 -c '{dump}'");
    let node = format!(
        "const d = require({:?}); console.log(JSON.stringify(d.parse(require('fs').readFileSync('.env.worktree'))))",
        r.node_modules.join("dotenv").display().to_string()
    );
    let env = ".env.worktree";
    vec![
        (env, "bash", read(t, dir, Path::new("bash"), &["-c", &bash])),
        (
            env,
            "python-dotenv",
            read(
                t,
                dir,
                &r.python,
                &[
                    "-c",
                    "import dotenv, json; print(json.dumps(dotenv.dotenv_values('.env.worktree')))",
                ],
            ),
        ),
        (
            env,
            "docker-compose",
            read(
                t,
                dir,
                Path::new(COMPOSE_PYTHON),
                &[
                    "-c",
                    "import json; from compose.config.environment import env_vars_from_file; print(json.dumps(env_vars_from_file('.env.worktree')))",
                ],
            ),
        ),
        (
            env,
            "node dotenv",
            read(t, dir, Path::new("node"), &["-e", &node]),
        ),
        (
            env,
            "direnv dotenv",
            read(
                t,
                dir,
                Path::new("direnv"),
                &["dotenv", "json", ".env.worktree"],
            ),
        ),
        (
            ".mise.local.toml",
            "mise",
            read(t, dir, &r.mise, &["env", "--json"]),
        ),
    ]
}

#[test]
fn every_reader_reads_every_value_pwt_writes_as_pwt_means_it_and_evaluates_none() {
    let Some(r) = crate::common::installed(readers()) else {
        return;
    };
    let t = TestEnv::new();
    let repo = t.repo("demo", Some(&hostile_env_toml()));
    for branch in BRANCHES {
        t.git(&repo, &["check-ref-format", "--branch", branch]);
        let made = t.pwt(&repo, &["new", branch, "--format", "json"]).ok();
        let dir = PathBuf::from(made.json()["path"].as_str().expect("path"));
        let truth = t
            .pwt(&repo, &["env", branch, "--format", "json"])
            .ok()
            .json();
        let truth: BTreeMap<String, String> = truth
            .as_object()
            .expect("object")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("string").to_owned()))
            .collect();
        assert_eq!(truth["PWT_BRANCH"], *branch);
        for (i, v) in HOSTILE.iter().enumerate() {
            assert_eq!(
                truth[&format!("H{i:02}")],
                *v,
                "pwt env has [env] literally"
            );
        }
        for (file, reader, got) in all_readers(&t, &r, &dir) {
            let text = std::fs::read_to_string(dir.join(file)).expect("file");
            for (k, want) in &truth {
                match got.get(k) {
                    Some(v) => assert_eq!(
                        v, want,
                        "{reader} reads {k} of {file} as {v:?}, pwt means {want:?}:\n{text}"
                    ),
                    None => {
                        assert!(
                            may_leave_out(file, want),
                            "{k} = {want:?} is missing from {file} for {reader}:\n{text}"
                        );
                        assert!(
                            made.stderr.contains(&format!("{k} left out of {file}")),
                            "leaving {k} out of {file} is said:\n{}",
                            made.stderr
                        );
                    }
                }
            }
        }
        assert!(
            !dir.join("pwned").exists() && !repo.join("pwned").exists(),
            "a reader ran a command from a value"
        );
    }
}

/// The README's direnv and mise recipes with the real tools: a post-create hook allows the
/// new worktree's `.envrc` and trusts its `.mise.local.toml`, and both then load pwt's values.
#[test]
fn direnv_and_mise_recipes_load_a_new_worktree_without_asking() {
    let Some(r) = crate::common::installed(readers()) else {
        return;
    };
    let t = TestEnv::new();
    let toml = format!(
        "[hooks]\npost-create = [\"direnv allow\", \"{} trust --quiet\"]\n",
        r.mise.display()
    );
    let repo = t.repo("demo", Some(&toml));
    std::fs::write(repo.join(".envrc"), "dotenv_if_exists .env.worktree\n").expect("envrc");
    t.git(&repo, &["add", ".envrc"]);
    t.git(&repo, &["commit", "-q", "-m", "envrc"]);
    let branch = "feat/$(touch$IFS-pwned)`touch$IFS-pwned`";
    let made = t.pwt(&repo, &["new", branch, "--format", "json"]).ok();
    let dir = PathBuf::from(made.json()["path"].as_str().expect("path"));
    let bare = |program: &Path, args: &[&str]| {
        Command::new(program)
            .args(args)
            .current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", t.home())
            .output()
            .expect("runs")
    };
    let direnv = bare(
        Path::new("direnv"),
        &["exec", ".", "printenv", "PWT_BRANCH"],
    );
    assert!(
        direnv.status.success(),
        "direnv loads the worktree: {}",
        String::from_utf8_lossy(&direnv.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&direnv.stdout).trim_end(), branch);
    let mise = bare(&r.mise, &["env", "--json"]);
    assert!(
        mise.status.success(),
        "mise trusts the worktree: {}",
        String::from_utf8_lossy(&mise.stderr)
    );
    let v: Value = serde_json::from_slice(&mise.stdout).expect("json");
    assert_eq!(v["PWT_BRANCH"], branch);
    assert!(
        !dir.join("pwned").exists(),
        "nothing ran from the branch name"
    );
}
