//! The part of the interleaved harnesses that is not timing: rows printed by child processes,
//! collected by the parent, and printed as medians over processes. Shared by
//! `benches/interleaved.rs` and `benches/kube_compare` (which includes this file by path).

use std::process::Command;

/// The load averages over 1, 5 and 15 minutes, as `/proc/loadavg` gives them (empty elsewhere).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Sorted ascending (no NaN in timings).
pub fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

/// One row of results, printed by a child process for the parent to collect.
pub fn report(table: &str, row: &str, cols: &[(&str, f64)]) {
    let cols: Vec<String> = cols.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("ROW\t{table}\t{row}\t{}", cols.join("\t"));
}

/// Row -> column -> the values of every process, in order of first appearance.
pub type Rows = Vec<(String, Vec<(String, Vec<f64>)>)>;

/// What the child processes printed: their tables, and their other lines (each once).
pub struct Collected {
    pub tables: Vec<(String, Rows)>,
    pub notes: Vec<String>,
}

/// Runs `processes` children made by `child` and collects what they print.
pub fn collect(processes: usize, child: impl Fn() -> Command) -> Collected {
    let mut collected = Collected {
        tables: Vec::new(),
        notes: Vec::new(),
    };
    for _ in 0..processes {
        let out = child().output().expect("run a child process");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut parts = line.split('\t');
            if parts.next() != Some("ROW") {
                if !collected.notes.iter().any(|n| n == line) {
                    collected.notes.push(line.to_owned());
                }
                continue;
            }
            let (table, row) = (parts.next().unwrap(), parts.next().unwrap());
            let rows = entry(&mut collected.tables, table);
            let cols = entry(rows, row);
            for col in parts {
                let (k, v) = col.split_once('=').unwrap();
                entry(cols, k).push(v.parse().unwrap());
            }
        }
    }
    collected
}

/// The value under `key`, added (empty) at the end if there is none.
fn entry<'a, T: Default>(list: &'a mut Vec<(String, T)>, key: &str) -> &'a mut T {
    let at = match list.iter().position(|(k, _)| k == key) {
        Some(at) => at,
        None => {
            list.push((key.to_owned(), T::default()));
            list.len() - 1
        }
    };
    &mut list[at].1
}

/// Column widths of a printed table: the row names, ratio columns (`x ...`) and the others.
pub struct Widths {
    pub row: usize,
    pub ratio: usize,
    pub other: usize,
}

/// Prints `rows` as medians over processes; ratio columns (`x ...`) also show the lowest and
/// highest process.
pub fn print_rows(rows: &Rows, w: &Widths) {
    print!("{:<width$}", "", width = w.row);
    for (h, _) in &rows[0].1 {
        let width = if h.starts_with("x ") {
            w.ratio
        } else {
            w.other
        };
        print!("{h:>width$}");
    }
    println!();
    for (row, cols) in rows {
        print!("{row:<width$}", width = w.row);
        for (name, values) in cols {
            let v = sorted(values.clone());
            let median = v[v.len() / 2];
            if name.starts_with("x ") {
                let cell = format!("{median:.3}x ({:.3}-{:.3})", v[0], v[v.len() - 1]);
                print!("{cell:>width$}", width = w.ratio);
            } else {
                print!("{median:>width$.1}", width = w.other);
            }
        }
        println!();
    }
}
