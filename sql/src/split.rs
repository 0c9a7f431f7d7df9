//! Splitting a profile query's time range into aligned intervals (`query.split_interval`):
//! each interval's partial aggregate is computed on its own and the partials merge exactly as
//! the partials of several sources do (stack-merge states are merged, series buckets summed),
//! so a split query answers what the whole one answers, a bounded piece at a time.

use std::time::Duration;

use hearth_engine::model::TimeRange;

use crate::service::MillisRange;

/// Intervals that cut at most this many pieces out of one query; longer ranges get wider
/// intervals (whole multiples of the configured one), so a year-long query with a 1 s interval
/// cannot make millions of sub-queries.
pub const MAX_PIECES: i64 = 1024;

/// `range` (half-open, nanoseconds) cut at every multiple of `interval` (nanoseconds) since the
/// Unix epoch that falls inside it; the pieces tile `range` exactly, in time order. An interval
/// of 0 or less, or an open-ended range, leaves the range whole.
pub fn split_range(range: TimeRange, interval: i64) -> Vec<TimeRange> {
    if interval <= 0 || range.start == i64::MIN || range.end == i64::MAX || range.end <= range.start
    {
        return vec![range];
    }
    // Both positive: ceiling division without the signed `div_ceil` (unstable for i64).
    let ceil = |a: i64, b: i64| (a + b - 1) / b;
    let span = range.end.saturating_sub(range.start);
    let interval = interval.max(ceil(ceil(span, MAX_PIECES), interval).saturating_mul(interval));
    let mut pieces = Vec::new();
    let mut start = range.start;
    // The first boundary after `start`.
    let mut cut = (range.start.div_euclid(interval) + 1).saturating_mul(interval);
    while cut < range.end {
        pieces.push(TimeRange::new(start, cut));
        start = cut;
        cut = cut.saturating_add(interval);
    }
    pieces.push(TimeRange::new(start, range.end));
    pieces
}

/// `range` (Connect milliseconds, both ends included) cut as [`split_range`] cuts it, on an
/// interval rounded down to whole milliseconds: pieces are inclusive millisecond ranges that
/// tile it. A range open on either side stays whole.
pub fn split_millis(range: MillisRange, interval: Duration) -> Vec<MillisRange> {
    let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX / 1_000_000);
    if range.start == 0 || range.end == 0 || interval_ms == 0 {
        return vec![range];
    }
    let nanos = range.nanos();
    let pieces = split_range(nanos, interval_ms.saturating_mul(1_000_000));
    // Every cut is a multiple of a whole number of milliseconds, as are the range's ends.
    pieces
        .into_iter()
        .map(|piece| MillisRange {
            start: piece.start.div_euclid(1_000_000),
            end: piece.end.div_euclid(1_000_000) - 1,
        })
        .collect()
}

/// `range` cut as [`split_millis`] cuts it, one millisecond later: pieces `(cut, next cut]`,
/// closed on the right as `SelectSeries` buckets and the series rollups' hours are, so an
/// hour of the rollups is never cut in two.
pub fn split_millis_right_closed(range: MillisRange, interval: Duration) -> Vec<MillisRange> {
    if range.start <= 1 || range.end == 0 {
        return vec![range];
    }
    let earlier = MillisRange {
        start: range.start - 1,
        end: range.end - 1,
    };
    split_millis(earlier, interval)
        .into_iter()
        .map(|piece| MillisRange {
            start: piece.start + 1,
            end: piece.end + 1,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000_000;

    #[test]
    fn pieces_are_aligned_and_tile_the_range() {
        let range = TimeRange::new(HOUR / 2, 3 * HOUR + 5);
        let pieces = split_range(range, HOUR);
        assert_eq!(
            pieces,
            vec![
                TimeRange::new(HOUR / 2, HOUR),
                TimeRange::new(HOUR, 2 * HOUR),
                TimeRange::new(2 * HOUR, 3 * HOUR),
                TimeRange::new(3 * HOUR, 3 * HOUR + 5),
            ]
        );
    }

    #[test]
    fn short_open_or_unsplit_ranges_stay_whole() {
        let inside = TimeRange::new(HOUR + 1, 2 * HOUR);
        assert_eq!(split_range(inside, HOUR), vec![inside]);
        assert_eq!(split_range(inside, 0), vec![inside]);
        assert_eq!(split_range(TimeRange::ALL, HOUR), vec![TimeRange::ALL]);
        // A boundary exactly at the start cuts nothing off.
        let aligned = TimeRange::new(HOUR, 2 * HOUR);
        assert_eq!(split_range(aligned, HOUR), vec![aligned]);
    }

    #[test]
    fn millisecond_pieces_tile_the_range_inclusively() {
        let hour_ms = HOUR / 1_000_000;
        let range = MillisRange {
            start: hour_ms / 2,
            end: 2 * hour_ms + 7,
        };
        let pieces = split_millis(range, Duration::from_secs(3600));
        assert_eq!(
            pieces,
            vec![
                MillisRange {
                    start: hour_ms / 2,
                    end: hour_ms - 1
                },
                MillisRange {
                    start: hour_ms,
                    end: 2 * hour_ms - 1
                },
                MillisRange {
                    start: 2 * hour_ms,
                    end: 2 * hour_ms + 7
                },
            ]
        );
        let open = MillisRange { start: 0, end: 5 };
        assert_eq!(split_millis(open, Duration::from_secs(1)), vec![open]);
        // Closed on the right: cuts one millisecond after the hour.
        let series = split_millis_right_closed(range, Duration::from_secs(3600));
        let bounds: Vec<(i64, i64)> = series.iter().map(|p| (p.start, p.end)).collect();
        assert_eq!(
            bounds,
            vec![
                (hour_ms / 2, hour_ms),
                (hour_ms + 1, 2 * hour_ms),
                (2 * hour_ms + 1, 2 * hour_ms + 7)
            ]
        );
        assert_eq!(split_millis(range, Duration::ZERO), vec![range]);
    }

    #[test]
    fn a_tiny_interval_over_a_long_range_is_widened() {
        let year = TimeRange::new(0, 365 * 24 * HOUR);
        let pieces = split_range(year, 1_000_000_000);
        assert!(pieces.len() as i64 <= MAX_PIECES + 1, "{}", pieces.len());
        assert_eq!(pieces.first().unwrap().start, 0);
        assert_eq!(pieces.last().unwrap().end, year.end);
        assert!(pieces.windows(2).all(|w| w[0].end == w[1].start));
    }
}
