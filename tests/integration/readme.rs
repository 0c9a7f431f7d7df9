//! The README's first steps, run as written: every `curl` command of its "Send it profiles"
//! and "Ask it questions" sections against a fresh hearth (only the address changes, and
//! `--fail-with-body -sS` is added so a refusal fails the test). They must end in a flame
//! graph: the JSON render over the last hour holds the pushed profile, the SVG draws it, and
//! the UI's page is served.

use std::path::Path;
use std::process::Command;

use super::support::Hearth;

/// The `curl` commands of the README's `## ` sections named in `sections`, continuation lines
/// joined.
fn readme_curls(sections: &[&str]) -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut commands = Vec::new();
    let mut current = String::new();
    let (mut wanted, mut in_block) = (false, false);
    for line in readme.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            wanted = sections.contains(&heading);
        }
        if line.starts_with("```") {
            in_block = line == "```sh";
            continue;
        }
        if !wanted || !in_block || (current.is_empty() && !line.starts_with("curl ")) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    commands
}

#[test]
fn the_readme_first_steps_end_in_a_flame_graph() {
    let hearth = Hearth::start();
    let base = hearth.url("");
    let base = base.trim_end_matches('/');
    let commands = readme_curls(&["Send it profiles", "Ask it questions"]);
    assert!(commands.len() >= 4, "{commands:?}");
    // A folder of its own for the files the commands write, with the repository's examples.
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::os::unix::fs::symlink(root.join("examples"), dir.path().join("examples")).unwrap();
    let mut outputs = Vec::new();
    for command in &commands {
        let command = command
            .replacen("curl ", "curl --fail-with-body -sS ", 1)
            .replace("http://localhost:4040", base);
        let output = Command::new("bash")
            .arg("-c")
            .arg(&command)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{command}\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        outputs.push((
            command,
            String::from_utf8_lossy(&output.stdout).into_owned(),
        ));
    }

    let (_, render) = outputs
        .iter()
        .find(|(c, _)| c.contains("/pyroscope/render?") && !c.contains("format="))
        .expect("the README renders JSON");
    let render: serde_json::Value = serde_json::from_str(render).unwrap();
    let ticks = render["flamebearer"]["numTicks"].as_i64().unwrap();
    assert!(ticks > 0, "the last hour's flame graph is empty: {render}");
    let (_, services) = outputs
        .iter()
        .find(|(c, _)| c.contains("LabelValues"))
        .expect("the README asks for services");
    assert!(services.contains("my.app"), "{services}");
    let svg = std::fs::read_to_string(dir.path().join("my.app.svg")).expect("the SVG is written");
    assert!(
        svg.contains("<svg") && svg.contains("<title>"),
        "{svg:.200}"
    );

    let page = hearth.get("/");
    assert_eq!(page.status(), 200);
    assert!(page.text().unwrap().contains("ui/app.js"));
}
