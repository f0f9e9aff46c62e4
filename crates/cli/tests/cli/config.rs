//! Configuration errors name the key and the file; `pwt config` names each value's source;
//! every command teaches with --help.

use crate::common::TestEnv;

#[test]
fn unknown_keys_and_bad_values_name_key_and_file() {
    let t = TestEnv::new();
    let repo = t.repo("demo", Some("[ports]\nrnage = [1, 2]\n"));
    let err = t.pwt(&repo, &["list"]).fails(1).stderr;
    assert!(err.contains("unknown key `ports.rnage`"), "{err}");
    assert!(
        err.contains(&repo.join("pwt.toml").display().to_string()),
        "{err}"
    );

    std::fs::write(repo.join("pwt.toml"), "[ports]\nrange = \"wide\"\n").expect("write");
    let err = t.pwt(&repo, &["list"]).fails(1).stderr;
    assert!(
        err.contains("`ports.range`") && err.contains("pwt.toml"),
        "{err}"
    );

    std::fs::write(repo.join("pwt.toml"), "[proxy]\nroute = \"web\"\n").expect("write");
    let err = t.pwt(&repo, &["list"]).fails(1).stderr;
    assert!(
        err.contains("`proxy.route`") && err.contains("pwt.toml"),
        "{err}"
    );

    std::fs::write(repo.join("pwt.toml"), "[env]\nX = \"{{ slgu }}\"\n").expect("write");
    let err = t.pwt(&repo, &["new", "typo"]).fails(1).stderr;
    assert!(err.contains("env.X") && err.contains("undefined"), "{err}");
    assert!(
        !repo.parent().expect("parent").join("demo.typo").exists(),
        "a failed render left a worktree"
    );
}

#[test]
fn layers_and_sources() {
    let t = TestEnv::new();
    let repo = t.repo(
        "demo",
        Some("[ports]\nrange = [26000, 26999]\n[proxy]\nlisten = \"127.0.0.1:9000\"\n"),
    );
    let user = t.home().join(".config/pwt");
    std::fs::create_dir_all(&user).expect("mkdir");
    std::fs::write(user.join("config.toml"), "[proxy]\ncallback = \"/cb\"\n").expect("write");
    let v = t
        .cmd(&repo, &["config", "--format", "json"])
        .env("PWT_PROXY__LISTEN", "127.0.0.1:9100")
        .env("PWT_SLUG", "not-config")
        .output()
        .expect("runs");
    let v: serde_json::Value = serde_json::from_slice(&v.stdout).expect("json");
    assert_eq!(v["ports.range"]["value"], serde_json::json!([26000, 26999]));
    assert!(
        v["ports.range"]["source"]
            .as_str()
            .expect("source")
            .ends_with("pwt.toml")
    );
    assert_eq!(v["proxy.callback"]["value"], "/cb");
    assert!(
        v["proxy.callback"]["source"]
            .as_str()
            .expect("source")
            .ends_with("config.toml")
    );
    assert_eq!(v["proxy.listen"]["value"], "127.0.0.1:9100");
    assert_eq!(
        v["proxy.listen"]["source"],
        "environment variable PWT_PROXY__LISTEN"
    );
    assert_eq!(v["worktree.path"]["source"], "default");
}

#[test]
fn init_writes_a_starter_that_loads() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    t.pwt(&repo, &["init"]).ok();
    t.pwt(&repo, &["init"]).fails(1);
    let v = t.pwt(&repo, &["config", "--format", "json"]).ok().json();
    assert_eq!(v["ports.services.frontend.env"]["value"], "FRONTEND_PORT");
    t.pwt(&repo, &["new", "from-starter"]).ok();
}

#[test]
fn every_command_teaches_and_reports_in_json() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    let top = t.pwt(&repo, &["--help"]).ok().stdout;
    for cmd in [
        "new",
        "up",
        "list",
        "env",
        "run",
        "url",
        "rm",
        "gc",
        "config",
        "init",
        "completions",
    ] {
        assert!(top.contains(cmd), "{cmd} missing from --help");
        let help = t.pwt(&repo, &[cmd, "--help"]).ok().stdout;
        assert!(help.len() > 200, "{cmd} --help is thin:\n{help}");
    }
    for cmd in ["new", "up", "list", "rm", "gc", "doctor", "config"] {
        let help = t.pwt(&repo, &[cmd, "--help"]).ok().stdout;
        assert!(help.contains("--format"), "{cmd} has no --format");
    }
    let bash = t.pwt(&repo, &["completions", "bash"]).ok().stdout;
    let check = std::process::Command::new("bash")
        .args(["-n", "-c", &bash])
        .output()
        .expect("bash");
    assert!(
        check.status.success(),
        "the bash completion does not parse: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(bash.contains("new") && bash.contains("--keep-worktree"));
}

/// A section a file opens does not make the keys it leaves out the file's.
#[test]
fn defaults_inside_a_section_of_the_file_are_credited_to_the_default() {
    let t = TestEnv::new();
    let repo = t.repo(
        "demo",
        Some("[postgres]\nurl = \"postgres://u@h/postgres\"\n"),
    );
    let v = t.pwt(&repo, &["config", "--format", "json"]).ok().json();
    assert!(
        v["postgres.url"]["source"]
            .as_str()
            .expect("source")
            .ends_with("pwt.toml")
    );
    assert_eq!(v["postgres.database"]["source"], "default", "{v}");
    assert_eq!(v["postgres.clone_from_main"]["source"], "default");
}
