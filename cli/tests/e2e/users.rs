//! Users administered as an operator would: the admin user routes through `tokenlife serve`
//! on both backends, and the `tokenlife users` commands (the real binary, passwords on
//! stdin) against the tables of a server on the aws backend. Also the CLI's conventions:
//! help everywhere, `--version`, exit codes.

use serde_json::json;
use tokenlife::both_backends;
use tokenlife::config::Backend;
use tokenlife::testkit::password_of;

use super::{BIN, serve};

both_backends!(users_over_http => users_are_administered_over_http);

fn users_are_administered_over_http(backend: Backend) {
    let server = serve(backend, &[]);
    let admin = format!("Bearer {}", server.admin_token());
    let auth = [("authorization", admin.as_str())];
    let json_auth = [
        ("authorization", admin.as_str()),
        ("content-type", "application/json"),
    ];
    let body = |value: serde_json::Value| value.to_string().into_bytes();

    // Create; a short password and a taken name are refused and change nothing.
    let created = server.post_json(
        "/admin/users",
        json!({"username": "carol", "password": password_of("carol"), "scopes": ["user", "reports"]}),
        &auth,
    );
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body["scopes"], json!(["user", "reports"]));
    server
        .post_json(
            "/admin/users",
            json!({"username": "dan", "password": "too-short"}),
            &auth,
        )
        .expect_error(400, "invalid_request");
    server
        .post_json(
            "/admin/users",
            json!({"username": "carol", "password": "another-long-password"}),
            &auth,
        )
        .expect_error(409, "conflict");
    // A non-admin cannot.
    let carol = server.login("carol", &password_of("carol")).expect(200);
    let carol_bearer = format!("Bearer {}", carol.text("access_token"));
    server
        .post_json(
            "/admin/users",
            json!({"username": "eve", "password": "eve-long-password"}),
            &[("authorization", &carol_bearer)],
        )
        .expect_error(403, "insufficient_scope");

    // List (pages of one, followed to the end) and show.
    let mut names = Vec::new();
    let mut path = "/admin/users?limit=1".to_owned();
    for _ in 0..20 {
        let page = server.send("GET", &path, &auth, None).expect(200);
        assert!(page.body["users"].as_array().unwrap().len() <= 1);
        for user in page.body["users"].as_array().unwrap() {
            assert!(user.get("password_hash").is_none());
            names.push(user["username"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/admin/users?limit=1&cursor={cursor}"),
            None => break,
        }
    }
    names.sort();
    assert_eq!(names, ["alice", "carol", "root"]);
    let shown = server
        .send("GET", "/admin/users/carol", &auth, None)
        .expect(200);
    assert_eq!(shown.body["sub"], created.body["sub"]);

    // Taking a scope away ends carol's session: her refresh and access token stop working.
    let patched = server
        .send(
            "PATCH",
            "/admin/users/carol",
            &json_auth,
            Some(&body(json!({"scopes": ["user"]}))),
        )
        .expect(200);
    assert_eq!(patched.body["sessions_ended"], true);
    server
        .refresh(&carol.text("refresh_token"))
        .expect_error(400, "invalid_grant");
    server
        .userinfo(&carol.text("access_token"))
        .expect_error(401, "invalid_token");
    let again = server.login("carol", &password_of("carol")).expect(200);
    assert_eq!(again.text("scope"), "user");

    // A new password ends the session again; the old password no longer works.
    server
        .send(
            "POST",
            "/admin/users/carol/password",
            &json_auth,
            Some(&body(json!({"password": "carol-second-passphrase"}))),
        )
        .expect(200);
    server
        .refresh(&again.text("refresh_token"))
        .expect_error(400, "invalid_grant");
    server
        .login("carol", &password_of("carol"))
        .expect_error(400, "invalid_grant");
    let third = server.login("carol", "carol-second-passphrase").expect(200);

    // Removal ends it too; then the name is unknown.
    server
        .send("DELETE", "/admin/users/carol", &auth, None)
        .expect(200);
    server
        .userinfo(&third.text("access_token"))
        .expect_error(401, "invalid_token");
    server
        .send("GET", "/admin/users/carol", &auth, None)
        .expect_error(404, "not_found");
    server.assert_output_free_of(&[&password_of("carol"), "carol-second-passphrase"]);
}

/// The `tokenlife users` commands against the tables of a running aws server: what they
/// change, the server sees at once.
#[test]
fn the_users_commands_administer_a_deployment() {
    let server = serve(Backend::Aws, &[]);
    let run = |args: &[&str], stdin: &str| {
        let output = server.cli(args, stdin);
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let dora_password = "dora-correct-horse";

    // `check` finds the deployment usable; named wrongly, it says what is missing (exit 1).
    let (code, out, err) = run(&["check"], "");
    assert_eq!(code, Some(0), "{out} {err}");
    assert!(
        out.contains("active key") && out.contains("enabled"),
        "{out}"
    );
    assert!(!out.contains("FAIL"), "{out}");
    let output = server.cli_with(&["check"], "", &[("TOKENLIFE_STACK", "no-such-stack")]);
    let out = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("FAIL  table no-such-stack-users: does not exist"),
        "{out}"
    );

    let (code, out, err) = run(
        &[
            "users",
            "add",
            "dora",
            "--scope",
            "user",
            "--scope",
            "reports",
            "--password-stdin",
            "--json",
        ],
        &format!("{dora_password}\n"),
    );
    assert_eq!(code, Some(0), "{out} {err}");
    let added: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(added["scopes"], json!(["user", "reports"]));
    let session = server.login("dora", dora_password).expect(200);

    // Refused: a short password (runtime error, 1), a taken name (1), no password source
    // without a terminal (usage, 2), an argument the command does not take (usage, 2).
    let (code, _, err) = run(&["users", "add", "erin", "--password-stdin"], "short\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("at least 15 characters"), "{err}");
    let (code, _, err) = run(
        &["users", "add", "dora", "--password-stdin"],
        "x-long-enough-password\n",
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("exists already"), "{err}");
    let (code, _, err) = run(&["users", "add", "erin"], "");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--password-stdin"), "{err}");
    let (code, _, err) = run(&["users", "add", "erin", "hunter2-in-argv"], "");
    assert_eq!(code, Some(2), "{err}");

    // Listed and shown, as a table and as JSON.
    let (code, out, _) = run(&["users", "list", "--json"], "");
    assert_eq!(code, Some(0));
    let listed: Vec<String> = serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect();
    assert!(listed.contains(&"dora".to_owned()) && listed.contains(&"alice".to_owned()));
    let (code, out, _) = run(&["users", "show", "dora"], "");
    assert_eq!(code, Some(0));
    assert!(
        out.contains("dora") && out.contains("user reports") && out.contains("enabled"),
        "{out}"
    );

    // Adding a scope ends nothing; taking one away ends the session.
    let (code, out, _) = run(
        &[
            "users", "scopes", "dora", "--set", "user", "reports", "audit",
        ],
        "",
    );
    assert_eq!(code, Some(0));
    assert!(!out.contains("sessions ended"), "{out}");
    let renewed = server.refresh(&session.text("refresh_token")).expect(200);
    let (code, out, _) = run(&["users", "scopes", "dora", "--set", "user"], "");
    assert_eq!(code, Some(0));
    assert!(out.contains("sessions ended"), "{out}");
    server
        .refresh(&renewed.text("refresh_token"))
        .expect_error(400, "invalid_grant");

    // Disable: logins refused, the session gone; enable: logins work again.
    let session = server.login("dora", dora_password).expect(200);
    assert_eq!(run(&["users", "disable", "dora"], "").0, Some(0));
    server
        .userinfo(&session.text("access_token"))
        .expect_error(401, "invalid_token");
    server
        .login("dora", dora_password)
        .expect_error(400, "invalid_grant");
    assert_eq!(run(&["users", "enable", "dora"], "").0, Some(0));
    let session = server.login("dora", dora_password).expect(200);

    // A new password from stdin ends the session; the new one logs in.
    let (code, _, err) = run(
        &["users", "passwd", "dora", "--password-stdin"],
        "dora-new-passphrase\r\n",
    );
    assert_eq!(code, Some(0), "{err}");
    server
        .refresh(&session.text("refresh_token"))
        .expect_error(400, "invalid_grant");
    let session = server.login("dora", "dora-new-passphrase").expect(200);

    // Removed: everything ends; the name is unknown (exit 1).
    assert_eq!(run(&["users", "remove", "dora"], "").0, Some(0));
    server
        .userinfo(&session.text("access_token"))
        .expect_error(401, "invalid_token");
    let (code, _, err) = run(&["users", "show", "dora"], "");
    assert_eq!(code, Some(1), "{err}");
    server.assert_output_free_of(&[dora_password, "dora-new-passphrase"]);
}

/// Help on every command and subcommand exits 0; `--version` prints the version; usage
/// errors exit 2 with a hint; completions are generated.
#[test]
fn the_command_line_follows_conventions() {
    let run = |args: &[&str]| {
        let output = std::process::Command::new(BIN).args(args).output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    for args in [
        &["--help"][..],
        &["help"],
        &["serve", "--help"],
        &["setup", "--help"],
        &["check", "--help"],
        &["keys", "--help"],
        &["keys", "retire", "--help"],
        &["users", "--help"],
        &["users", "add", "--help"],
        &["users", "scopes", "--help"],
        &["completions", "--help"],
    ] {
        let (code, out, err) = run(args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert!(out.contains("Usage: tokenlife"), "{args:?}: {out}");
    }
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        out.trim(),
        format!("tokenlife {}", env!("CARGO_PKG_VERSION"))
    );
    for args in [
        &[][..],
        &["spin"],
        &["keys"],
        &["keys", "retire"],
        &["users", "scopes", "alice"],
        &["serve", "--addr", "nowhere"],
        &["serve", "--user", "no-password"],
    ] {
        let (code, _, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(
            err.contains("Usage:") || err.contains("--help"),
            "{args:?}: {err}"
        );
    }
    let (code, out, _) = run(&["completions", "bash"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("tokenlife") && out.contains("users"),
        "bash completion"
    );
}
