//! The service's own settings, read once at start-up beside the framework's [`Config`]: where
//! the data lives, the running service's URL for the `events`
//! commands and the ops routes' token. Unset or empty means the default; a malformed value is
//! an error that names the variable.

use anyhow::Context;
use event_runtime::config::Config;

use crate::db::DEFAULT_DATABASE_URL;

/// What the service reads from its environment, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `DATABASE_URL`, else [`DEFAULT_DATABASE_URL`].
    pub database_url: String,
    /// `TODO_URL`: the running service the `events` commands ask.
    pub todo_url: Option<String>,
    /// The ops routes' token: `ADMIN_API_TOKEN` when set, else the framework's `APP_API_TOKEN`
    /// (the token Dapr sends), else none.
    pub ops_token: Option<String>,
}

impl Default for Settings {
    /// Every variable unset.
    fn default() -> Self {
        Settings {
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            todo_url: None,
            ops_token: None,
        }
    }
}

impl Settings {
    /// The process environment, with the ops token falling back on `runtime`'s `APP_API_TOKEN`.
    pub fn from_env(runtime: &Config) -> anyhow::Result<Settings> {
        Settings::from_lookup(|name| std::env::var(name).ok(), runtime)
    }

    /// The environment `lookup` answers (`None` for an unset variable).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        runtime: &Config,
    ) -> anyhow::Result<Settings> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let database_url = get("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        let todo_url = get("TODO_URL");
        if let Some(url) = &todo_url {
            url.parse::<axum::http::Uri>()
                .ok()
                .filter(|u| u.scheme().is_some() && u.host().is_some())
                .with_context(|| {
                    format!(
                        "TODO_URL={url:?} is not valid: expected a URL like http://127.0.0.1:8080"
                    )
                })?;
        }
        Ok(Settings {
            database_url,
            todo_url,
            ops_token: get("ADMIN_API_TOKEN").or_else(|| runtime.settings.app_api_token.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)], runtime: &Config) -> anyhow::Result<Settings> {
        let lookup = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        };
        Settings::from_lookup(lookup, runtime)
    }

    #[test]
    fn nothing_set_means_the_defaults() {
        assert_eq!(parse(&[], &Config::default()).unwrap(), Settings::default());
    }

    #[test]
    fn every_variable_is_read() {
        let runtime =
            Config::from_lookup(|n| (n == "APP_API_TOKEN").then(|| "d4pr".to_owned())).unwrap();
        let s = parse(
            &[
                ("DATABASE_URL", "sqlite::memory:"),
                ("TODO_URL", "http://127.0.0.1:9000"),
            ],
            &runtime,
        )
        .unwrap();
        assert_eq!(s.database_url, "sqlite::memory:");
        assert_eq!(s.todo_url.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(
            s.ops_token.as_deref(),
            Some("d4pr"),
            "APP_API_TOKEN, from the runtime"
        );
        let s = parse(&[("ADMIN_API_TOKEN", "adm1n")], &runtime).unwrap();
        assert_eq!(s.ops_token.as_deref(), Some("adm1n"));
    }

    #[test]
    fn a_malformed_variable_is_named() {
        let err = parse(&[("TODO_URL", "localhost")], &Config::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("TODO_URL=\"localhost\" is not valid"),
            "{err}"
        );
    }

    /// The service reads its environment here, and the framework's through `Config`: no other
    /// file calls `std::env::var` (so `APP_PORT`, say, is read once, by the framework).
    #[test]
    fn only_the_settings_read_the_environment() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut readers = Vec::new();
        let mut dirs = vec![src.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && path != src.join("settings.rs")
                    && std::fs::read_to_string(&path).unwrap().contains("env::var")
                {
                    readers.push(path.display().to_string());
                }
            }
        }
        assert_eq!(readers, Vec::<String>::new());
    }
}
