use std::sync::Arc;

use super::*;

fn events_in(dir: &std::path::Path, journal: JournalSettings) -> Events {
    Events::new(EventSettings {
        dir: dir.to_path_buf(),
        journal,
    })
}

fn note(i: usize) -> EventKind {
    EventKind::Note {
        text: format!("n{i}"),
    }
}

fn text_of(item: &Item) -> String {
    match item {
        Item::Event(e) => e.kind.describe(),
        Item::Skipped(n) => format!("skipped {n}"),
    }
}

#[tokio::test]
async fn a_new_follower_gets_only_what_comes_next() {
    let dir = tempfile::tempdir().unwrap();
    let ev = events_in(dir.path(), JournalSettings::default());
    ev.emit("a", None, None, note(0));
    let mut f = ev.follow("a", None);
    ev.emit("a", Some(3), Some(9), note(1));
    ev.emit("b", None, None, note(99));
    let item = f.next().await.unwrap();
    assert_eq!(text_of(&item), "n1");
    let Item::Event(e) = item else { panic!() };
    assert_eq!((e.deploy, e.job), (Some(3), Some(9)));
    assert!(f.try_next().is_none(), "another app's event leaked in");
}

#[tokio::test]
async fn ids_grow_and_resume_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let ev = events_in(dir.path(), JournalSettings::default());
        let a = ev.emit("a", None, None, note(0));
        let b = ev.emit("a", None, None, note(1));
        assert!(b > a);
        ev.flush();
        b
    };
    let ev = events_in(dir.path(), JournalSettings::default());
    assert_eq!(ev.last_id("a"), first, "last id read back from the journal");
    let next = ev.emit("a", None, None, note(2));
    assert!(next > first);
    // Resuming from the first event replays the rest from the journal.
    let mut f = ev.follow("a", Some(first - 1));
    assert_eq!(text_of(&f.next().await.unwrap()), "n1");
    assert_eq!(text_of(&f.next().await.unwrap()), "n2");
}

#[tokio::test]
async fn replay_then_live_has_no_gap_and_no_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let ev = events_in(dir.path(), JournalSettings::default());
    // More than memory holds, so the replay starts in the files; the
    // writer racing the follow stays within the live channel's capacity
    // (beyond it the follower is told it skipped lines: another test).
    let before = RECENT_EVENTS * 2;
    let racing = LIVE_CAPACITY / 2;
    let total = before + racing;
    let mut ids = Vec::new();
    for i in 0..before {
        ids.push(ev.emit("a", None, None, note(i)));
    }
    let writer = {
        let ev = ev.clone();
        std::thread::spawn(move || {
            (before..total)
                .map(|i| ev.emit("a", None, None, note(i)))
                .collect::<Vec<_>>()
        })
    };
    // Resume from the tenth event while the writer is busy.
    let mut f = ev.follow("a", Some(ids[9]));
    ids.extend(writer.join().unwrap());
    let mut got = Vec::new();
    while got.len() < total - 10 {
        match tokio::time::timeout(std::time::Duration::from_secs(20), f.next()).await {
            Ok(Some(Item::Event(e))) => got.push(e.id),
            other => panic!("after {} events: {other:?}", got.len()),
        }
    }
    assert_eq!(
        got,
        ids[10..],
        "every id after the resume point, once, in order"
    );
    assert!(f.try_next().is_none());
}

#[tokio::test]
async fn a_slow_follower_is_told_what_it_lost_and_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let ev = events_in(dir.path(), JournalSettings::default());
    let mut f = ev.follow("a", None);
    let total = LIVE_CAPACITY * 4;
    for i in 0..total {
        ev.emit("a", None, None, note(i));
    }
    let (mut seen, mut skipped) = (0u64, 0u64);
    let mut last_text = String::new();
    while let Some(item) = f.try_next() {
        match item {
            Item::Event(e) => {
                seen += 1;
                last_text = e.kind.describe();
            }
            Item::Skipped(n) => skipped += n,
        }
    }
    assert!(skipped > 0, "a follower that did not read lost events");
    assert!(seen <= LIVE_CAPACITY as u64, "it holds at most the channel");
    assert_eq!(
        seen + skipped,
        total as u64,
        "every event is seen or counted"
    );
    assert_eq!(last_text, format!("n{}", total - 1), "and it catches up");
}

#[tokio::test]
async fn journals_rotate_and_keep_within_retention() {
    let dir = tempfile::tempdir().unwrap();
    let settings = JournalSettings {
        segment_bytes: 4 * 1024,
        retention_bytes: 16 * 1024,
    };
    let ev = events_in(dir.path(), settings);
    let mut last = 0;
    for i in 0..2000 {
        last = ev.emit("a", None, None, note(i));
    }
    ev.flush();
    let files: Vec<_> = std::fs::read_dir(dir.path().join("a"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .collect();
    assert!(files.len() >= 2, "rotated: {files:?}");
    let total: u64 = files.iter().sum();
    assert!(
        total <= 16 * 1024 + 4 * 1024 + 200,
        "retention kept: {total}"
    );
    // What is left reads back in order, ending with the newest event.
    let read: Vec<EventId> = journal::read_from(&dir.path().join("a"), 0)
        .map(|e| e.id)
        .collect();
    assert!(read.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(read.last(), Some(&last));
}

#[test]
fn a_line_cut_short_by_a_crash_is_skipped() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let ev = events_in(dir.path(), JournalSettings::default());
    let last = ev.emit("a", None, None, note(1));
    ev.flush();
    let seg = std::fs::read_dir(dir.path().join("a"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(b"{\"id\":99999999999999999,\"at\":1,\"ty")
        .unwrap();
    drop(f);
    let ev = events_in(dir.path(), JournalSettings::default());
    assert_eq!(ev.last_id("a"), last);
    assert_eq!(journal::read_from(&dir.path().join("a"), 0).count(), 1);
}

#[test]
fn journal_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ev = events_in(dir.path(), JournalSettings::default());
    ev.emit("a", None, None, note(1));
    ev.flush();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("a")), 0o700);
    for e in std::fs::read_dir(dir.path().join("a")).unwrap() {
        assert_eq!(mode(&e.unwrap().path()), 0o600);
    }
}

#[test]
fn tail_reads_memory_then_files_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let ev = events_in(dir.path(), JournalSettings::default());
    for i in 0..RECENT_EVENTS * 2 {
        ev.emit("a", None, None, note(i));
        ev.emit(
            "a",
            None,
            None,
            EventKind::BuildOutput {
                text: format!("b{i}"),
            },
        );
    }
    let keep = |e: &Event| e.kind.is_runtime_log();
    let (short, _) = ev.tail("a", 3, keep);
    let texts: Vec<String> = short.iter().map(|e| e.kind.describe()).collect();
    let n = RECENT_EVENTS * 2;
    assert_eq!(
        texts,
        [n - 3, n - 2, n - 1].map(|i| format!("n{i}")),
        "newest last, build output left out"
    );
    // More than memory holds: the rest comes from the journal.
    let (long, _) = ev.tail("a", RECENT_EVENTS + 10, keep);
    assert_eq!(long.len(), RECENT_EVENTS + 10);
    assert!(long.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(long.last().unwrap().kind.describe(), format!("n{}", n - 1));
}

#[test]
fn range_returns_one_jobs_events() {
    let dir = tempfile::tempdir().unwrap();
    let ev = events_in(dir.path(), JournalSettings::default());
    let from = ev.emit("a", None, Some(1), note(0));
    for i in 0..RECENT_EVENTS * 2 {
        ev.emit("a", None, Some(1 + (i % 2) as i64), note(i));
    }
    let to = ev.emit("a", None, Some(1), note(7));
    let job1 = ev.range("a", from, to, |e| e.job == Some(1));
    assert_eq!(job1.len(), RECENT_EVENTS + 2);
    assert!(job1.iter().all(|e| e.job == Some(1)));
    assert!(job1.windows(2).all(|w| w[0].id < w[1].id));
}

#[test]
fn lines_read_like_logs() {
    let e = Event {
        id: 1,
        at: 0,
        deploy: Some(1),
        job: None,
        kind: EventKind::App {
            process: "web".into(),
            stream: OutputStream::Err,
            text: "boom".into(),
        },
    };
    assert_eq!(e.to_line(), "1970-01-01 00:00:00 web! boom");
    let r = Event {
        kind: EventKind::Request {
            line: "GET / 200".into(),
        },
        ..e.clone()
    };
    assert_eq!(r.to_line(), "1970-01-01 00:00:00 router  GET / 200");
    let n = Event {
        kind: EventKind::Vm {
            change: VmChange::Crashed,
            vm: "hello-4".into(),
            detail: Some("exit 1".into()),
        },
        ..e
    };
    assert_eq!(
        n.to_line(),
        "1970-01-01 00:00:00 byteport  VM hello-4 ended unexpectedly (exit 1)"
    );
    let json = serde_json::to_string(&n).unwrap();
    assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), n);
}

#[test]
fn removing_an_app_deletes_its_journal() {
    let dir = tempfile::tempdir().unwrap();
    let ev = events_in(dir.path(), JournalSettings::default());
    ev.emit("a", None, None, note(0));
    ev.flush();
    assert!(dir.path().join("a").exists());
    ev.remove("a").unwrap();
    assert!(!dir.path().join("a").exists());
    let _ = Arc::new(());
}
