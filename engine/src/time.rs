//! Time as Pyroscope's HTTP APIs write it, for every surface: the current time, and `attime`
//! values (`from`/`until` of `/ingest` and `/pyroscope/render`).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, ErrorKind, Result};

fn invalid(message: String) -> Error {
    Error::invalid(ErrorKind::InvalidArgument, message)
}

/// Now, in Unix nanoseconds.
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Parses Pyroscope's `attime`: digits (8 = `YYYYMMDD`, 13 = ms, 16 = µs, 19 = ns, otherwise
/// seconds), `now`, or `now-<n><unit>` with units s, m/min, h, d, w, M/mon, y.
pub fn parse_attime(value: &str, now_nanos: i64) -> Result<i64> {
    let value = value.trim();
    if value.bytes().all(|b| b.is_ascii_digit()) && !value.is_empty() {
        let n: i64 = value
            .parse()
            .map_err(|_| invalid(format!("{value:?} is out of range")))?;
        return Ok(match value.len() {
            8 => date_nanos(value)?,
            13 => n.saturating_mul(1_000_000),
            16 => n.saturating_mul(1_000),
            19 => n,
            _ => n.saturating_mul(1_000_000_000),
        });
    }
    let Some(offset) = value.strip_prefix("now") else {
        return Err(invalid(format!(
            "{value:?} is not a time: expected unix seconds/ms/µs/ns, YYYYMMDD, or now[-+]<n><unit>"
        )));
    };
    if offset.is_empty() {
        return Ok(now_nanos);
    }
    let (sign, amount) = match offset.as_bytes()[0] {
        b'-' => (-1i64, &offset[1..]),
        b'+' => (1, &offset[1..]),
        _ => return Err(invalid(format!("{value:?}: expected '-' or '+' after now"))),
    };
    let digits = amount.bytes().take_while(u8::is_ascii_digit).count();
    let n: i64 = amount[..digits].parse().map_err(|_| {
        invalid(format!(
            "{value:?}: expected a number after now{}",
            &offset[..1]
        ))
    })?;
    let unit_seconds: i64 = match &amount[digits..] {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "M" | "mon" => 30 * 86_400,
        "y" => 365 * 86_400,
        other => return Err(invalid(format!("{value:?}: unknown unit {other:?}"))),
    };
    Ok(now_nanos
        .saturating_add(sign * n.saturating_mul(unit_seconds).saturating_mul(1_000_000_000)))
}

/// Midnight UTC of a `YYYYMMDD` date, in Unix nanoseconds.
fn date_nanos(value: &str) -> Result<i64> {
    let year: i64 = value[..4]
        .parse()
        .map_err(|_| invalid(format!("bad date {value:?}")))?;
    let month: i64 = value[4..6]
        .parse()
        .map_err(|_| invalid(format!("bad date {value:?}")))?;
    let day: i64 = value[6..]
        .parse()
        .map_err(|_| invalid(format!("bad date {value:?}")))?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return Err(invalid(format!("bad date {value:?}")));
    }
    // Days from the civil calendar (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days * 86_400 * 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attime_units() {
        let now = 1_000_000_000_000_000_000;
        assert_eq!(
            parse_attime("1795260730", now).unwrap(),
            1_795_260_730_000_000_000
        );
        assert_eq!(
            parse_attime("1795260730123", now).unwrap(),
            1_795_260_730_123_000_000
        );
        assert_eq!(
            parse_attime("1795260730123456789", now).unwrap(),
            1_795_260_730_123_456_789
        );
        assert_eq!(
            parse_attime("20240102", now).unwrap(),
            1_704_153_600_000_000_000
        );
        assert_eq!(
            parse_attime("now-1h", now).unwrap(),
            now - 3_600_000_000_000
        );
        assert!(parse_attime("yesterday", now).is_err());
    }
}
