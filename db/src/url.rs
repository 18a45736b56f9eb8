//! Database URLs as messages may show them: the password replaced by `***`.

/// `url` with its password (`user:PASSWORD@`, or a `password=` parameter) replaced by `***`,
/// for logs and error messages.
pub fn redact(url: &str) -> String {
    let mut out = match url.split_once("://") {
        Some((scheme, rest)) => {
            // The authority ends at the first '/', '?' or '#'; its userinfo at its last '@'.
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, path) = rest.split_at(end);
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
                    None => url.to_owned(),
                },
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    };
    if let Some(q) = out.find('?') {
        let (base, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_owned(),
            })
            .collect();
        out = format!("{base}{}", query.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted_wherever_they_are() {
        assert_eq!(
            redact("postgres://pier:s3cr@t@db.example:5432/pier"),
            "postgres://pier:***@db.example:5432/pier"
        );
        assert_eq!(
            redact("postgres://pier@db/pier?password=hunter2&sslmode=require"),
            "postgres://pier@db/pier?password=***&sslmode=require"
        );
        assert_eq!(
            redact("postgresql://db:5432/pier"),
            "postgresql://db:5432/pier"
        );
        assert_eq!(
            redact("sqlite:///var/pier/pier.db"),
            "sqlite:///var/pier/pier.db"
        );
    }
}
