//! The network underneath Engine 2: a graph of locations with per-node
//! host bandwidth and per-edge latency and loss, read from a Shadow-style
//! GML file or generated from random coordinates, reduced to a matrix of
//! path latency and loss between every two locations.
//!
//! GML subset (as Shadow documents it): `graph [ directed 0|1 node [ id N
//! host_bandwidth_up "100 Mbit" host_bandwidth_down "100 Mbit" ] edge [
//! source A target B latency "10 ms" packet_loss 0.01 jitter "0 ms" ] ]`.
//! Other keys (labels, coordinates) are ignored. The file is untrusted:
//! every fault is a [`GraphError`] naming the line, never a panic.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use rand::Rng;

use super::units;

/// Largest graph file read.
pub const MAX_GRAPH_BYTES: usize = 64 * 1024 * 1024;
/// Most locations: the path matrix holds one entry per pair.
pub const MAX_NODES: usize = 2048;
/// Deepest nesting of lists accepted.
const MAX_DEPTH: usize = 8;

/// Why a graph was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GraphError {
    /// Not GML: an unexpected character, an unterminated string or list.
    #[error("line {line}: {reason}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A node or edge attribute is missing, of the wrong type or out of range.
    #[error("line {line}: {key}: {reason}")]
    Attribute {
        /// 1-based line of the attribute (or of its node or edge when missing).
        line: usize,
        /// The attribute.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No top-level `graph [ ... ]`.
    #[error("line {line}: no `graph [ ... ]` list")]
    NoGraph {
        /// Last line read.
        line: usize,
    },
    /// Too big to hold.
    #[error("graph too large: {0}")]
    TooLarge(String),
    /// Two locations with no path between them.
    #[error(
        "no path from node {from} to node {to} (hosts on one node need a self-loop edge there)"
    )]
    Unreachable {
        /// Source node id.
        from: i64,
        /// Target node id.
        to: i64,
    },
}

/// Bandwidth of the hosts at one location, bytes per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostBandwidth {
    /// Upstream.
    pub up: u64,
    /// Downstream.
    pub down: u64,
}

/// Every location and the path between every two of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    bandwidth: Vec<HostBandwidth>,
    latency_ns: Vec<u64>,
    loss: Vec<f64>,
}

impl Topology {
    /// Number of locations.
    pub fn nodes(&self) -> usize {
        self.bandwidth.len()
    }

    /// Host bandwidth at location `node`.
    pub fn bandwidth(&self, node: usize) -> HostBandwidth {
        self.bandwidth[node]
    }

    /// One-way latency (ns) and loss probability from `from` to `to`.
    pub fn path(&self, from: usize, to: usize) -> (u64, f64) {
        let index = from * self.nodes() + to;
        (self.latency_ns[index], self.loss[index])
    }

    /// `nodes` locations placed uniformly in a unit square. The latency
    /// between two is `min_latency_ns` plus the share of the diagonal
    /// that separates them times `max_latency_ns − min_latency_ns`; every
    /// path loses packets with probability `loss`; every location has
    /// host bandwidth `bandwidth`.
    pub fn coordinates<R: Rng + ?Sized>(
        nodes: usize,
        min_latency_ns: u64,
        max_latency_ns: u64,
        loss: f64,
        bandwidth: HostBandwidth,
        rng: &mut R,
    ) -> Self {
        let points: Vec<(f64, f64)> = (0..nodes)
            .map(|_| (rng.r#gen::<f64>(), rng.r#gen::<f64>()))
            .collect();
        let spread = max_latency_ns.saturating_sub(min_latency_ns) as f64;
        let mut latency_ns = Vec::with_capacity(nodes * nodes);
        for a in &points {
            for b in &points {
                let share = (a.0 - b.0).hypot(a.1 - b.1) / std::f64::consts::SQRT_2;
                latency_ns.push(min_latency_ns + (share * spread).round() as u64);
            }
        }
        Self {
            bandwidth: vec![bandwidth; nodes],
            latency_ns,
            loss: vec![loss; nodes * nodes],
        }
    }

    /// Reads a GML graph and computes the shortest-latency path between
    /// every two nodes (as Shadow does with `use_shortest_path`); a path's
    /// loss is `1 − Π(1 − loss)` over its edges. A node's path to itself
    /// is its self-loop edge.
    pub fn from_gml(text: &str) -> Result<Self, GraphError> {
        if text.len() > MAX_GRAPH_BYTES {
            return Err(GraphError::TooLarge(format!(
                "{} bytes (at most {MAX_GRAPH_BYTES})",
                text.len()
            )));
        }
        let items = Parser::new(text).document()?;
        let graph = read_graph(&items, text.lines().count().max(1))?;
        graph.paths()
    }
}

/// A GML value.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Int(i64),
    Real(f64),
    Str(String),
    List(Vec<Item>),
}

/// `key value`, with the line the key is on.
#[derive(Debug, Clone, PartialEq)]
struct Item {
    key: String,
    value: Value,
    line: usize,
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            pos: 0,
            line: 1,
        }
    }

    fn document(&mut self) -> Result<Vec<Item>, GraphError> {
        let items = self.items(0)?;
        match self.peek() {
            None => Ok(items),
            Some(_) => Err(self.syntax("`]` without a matching `[`")),
        }
    }

    /// Key-value pairs until `]` or the end.
    fn items(&mut self, depth: usize) -> Result<Vec<Item>, GraphError> {
        if depth > MAX_DEPTH {
            return Err(self.syntax(&format!("lists nested deeper than {MAX_DEPTH}")));
        }
        let mut items = Vec::new();
        loop {
            match self.peek() {
                None | Some(']') => return Ok(items),
                Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
                Some(c) => return Err(self.syntax(&format!("expected a key, found {c:?}"))),
            }
            let line = self.line;
            let key = self
                .take_while(|c| c.is_ascii_alphanumeric() || c == '_')
                .to_owned();
            let value = match self.peek() {
                None => return Err(self.syntax(&format!("`{key}` has no value"))),
                Some('[') => {
                    self.bump();
                    let inner = self.items(depth + 1)?;
                    if self.peek() != Some(']') {
                        return Err(GraphError::Syntax {
                            line,
                            reason: format!("list `{key}` is not closed with `]`"),
                        });
                    }
                    self.bump();
                    Value::List(inner)
                }
                Some('"') => self.string()?,
                Some(c) if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => {
                    self.number()?
                }
                Some(c) => {
                    return Err(self.syntax(&format!("`{key}`: unexpected {c:?}")));
                }
            };
            items.push(Item { key, value, line });
        }
    }

    fn string(&mut self) -> Result<Value, GraphError> {
        let line = self.line;
        self.bump();
        let rest = &self.text[self.pos..];
        let Some(end) = rest.find('"') else {
            return Err(GraphError::Syntax {
                line,
                reason: "unterminated string".to_owned(),
            });
        };
        let content = &rest[..end];
        self.line += content.matches('\n').count();
        self.pos += end + 1;
        Ok(Value::Str(content.to_owned()))
    }

    fn number(&mut self) -> Result<Value, GraphError> {
        let token =
            self.take_while(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'));
        if let Ok(int) = token.parse::<i64>() {
            return Ok(Value::Int(int));
        }
        match token.parse::<f64>() {
            Ok(real) if real.is_finite() => Ok(Value::Real(real)),
            _ => Err(self.syntax(&format!("{token:?} is not a number"))),
        }
    }

    /// Skips blanks and `#` comments; the next character.
    fn peek(&mut self) -> Option<char> {
        loop {
            let c = self.text[self.pos..].chars().next()?;
            if c == '#' {
                self.take_while(|c| c != '\n');
            } else if c.is_whitespace() {
                self.bump();
            } else {
                return Some(c);
            }
        }
    }

    fn bump(&mut self) {
        if let Some(c) = self.text[self.pos..].chars().next() {
            if c == '\n' {
                self.line += 1;
            }
            self.pos += c.len_utf8();
        }
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        let rest = &self.text[start..];
        let len = rest.find(|c: char| !keep(c)).unwrap_or(rest.len());
        self.line += rest[..len].matches('\n').count();
        self.pos += len;
        &self.text[start..start + len]
    }

    fn syntax(&self, reason: &str) -> GraphError {
        GraphError::Syntax {
            line: self.line,
            reason: reason.to_owned(),
        }
    }
}

struct Edge {
    from: usize,
    to: usize,
    latency_ns: u64,
    loss: f64,
}

/// The graph as read: nodes in file order, edges by index.
struct Graph {
    ids: Vec<i64>,
    bandwidth: Vec<HostBandwidth>,
    edges: Vec<Edge>,
}

fn read_graph(items: &[Item], last_line: usize) -> Result<Graph, GraphError> {
    let Some(body) = items
        .iter()
        .find_map(|item| match (&item.key[..], &item.value) {
            ("graph", Value::List(body)) => Some(body),
            _ => None,
        })
    else {
        return Err(GraphError::NoGraph { line: last_line });
    };
    let mut directed = false;
    let mut index = BTreeMap::new();
    let mut graph = Graph {
        ids: Vec::new(),
        bandwidth: Vec::new(),
        edges: Vec::new(),
    };
    for item in body {
        match (&item.key[..], &item.value) {
            ("directed", Value::Int(flag @ (0 | 1))) => directed = *flag == 1,
            ("directed", _) => return Err(attribute(item.line, "directed", "must be 0 or 1")),
            ("node", Value::List(node)) => {
                let id = int(node, "id", item.line)?;
                if index.insert(id, graph.ids.len()).is_some() {
                    return Err(attribute(
                        item.line,
                        "id",
                        &format!("node {id} listed twice"),
                    ));
                }
                if graph.ids.len() == MAX_NODES {
                    return Err(GraphError::TooLarge(format!("more than {MAX_NODES} nodes")));
                }
                graph.ids.push(id);
                graph.bandwidth.push(HostBandwidth {
                    up: bandwidth(node, "host_bandwidth_up", item.line)?,
                    down: bandwidth(node, "host_bandwidth_down", item.line)?,
                });
            }
            ("edge", Value::List(_)) => {}
            ("node" | "edge", _) => {
                return Err(attribute(
                    item.line,
                    "graph",
                    "`node` and `edge` must be lists",
                ));
            }
            _ => {}
        }
    }
    for item in body {
        let ("edge", Value::List(edge)) = (&item.key[..], &item.value) else {
            continue;
        };
        let end = |key: &'static str| -> Result<usize, GraphError> {
            let id = int(edge, key, item.line)?;
            index
                .get(&id)
                .copied()
                .ok_or_else(|| attribute(item.line, key, &format!("no node has id {id}")))
        };
        let (from, to) = (end("source")?, end("target")?);
        let latency_ns =
            duration(edge, "latency")?.ok_or_else(|| attribute(item.line, "latency", "missing"))?;
        if latency_ns == 0 {
            return Err(attribute(item.line, "latency", "must be positive"));
        }
        if let Some(jitter) = duration(edge, "jitter")? {
            if jitter != 0 {
                return Err(attribute(
                    item.line,
                    "jitter",
                    "jitter is not modelled; use 0",
                ));
            }
        }
        let loss = loss(edge)?;
        graph.edges.push(Edge {
            from,
            to,
            latency_ns,
            loss,
        });
        if !directed && from != to {
            graph.edges.push(Edge {
                from: to,
                to: from,
                latency_ns,
                loss,
            });
        }
    }
    if graph.ids.is_empty() {
        return Err(GraphError::NoGraph { line: last_line });
    }
    Ok(graph)
}

impl Graph {
    /// Shortest-latency paths between every two nodes (Dijkstra from each).
    fn paths(self) -> Result<Topology, GraphError> {
        let n = self.ids.len();
        let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (index, edge) in self.edges.iter().enumerate() {
            out[edge.from].push(index);
        }
        let mut latency_ns = vec![0; n * n];
        let mut loss = vec![0.0; n * n];
        for source in 0..n {
            // (latency, probability of surviving) of the best path so far.
            let mut best: Vec<Option<(u64, f64)>> = vec![None; n];
            let mut heap = BinaryHeap::new();
            for &e in &out[source] {
                let edge = &self.edges[e];
                relax(
                    &mut best,
                    &mut heap,
                    edge.to,
                    edge.latency_ns,
                    1.0 - edge.loss,
                );
            }
            while let Some(Reverse((at, node))) = heap.pop() {
                let Some((latency, survive)) = best[node] else {
                    continue;
                };
                if latency != at {
                    continue;
                }
                for &e in &out[node] {
                    let edge = &self.edges[e];
                    let next = latency.saturating_add(edge.latency_ns);
                    relax(
                        &mut best,
                        &mut heap,
                        edge.to,
                        next,
                        survive * (1.0 - edge.loss),
                    );
                }
            }
            // A node's own path is its cheapest self-loop, not a round trip.
            best[source] = out[source]
                .iter()
                .map(|&e| &self.edges[e])
                .filter(|edge| edge.to == source)
                .min_by_key(|edge| edge.latency_ns)
                .map(|edge| (edge.latency_ns, 1.0 - edge.loss));
            for (target, entry) in best.iter().enumerate() {
                let Some((latency, survive)) = entry else {
                    return Err(GraphError::Unreachable {
                        from: self.ids[source],
                        to: self.ids[target],
                    });
                };
                latency_ns[source * n + target] = *latency;
                loss[source * n + target] = 1.0 - survive;
            }
        }
        Ok(Topology {
            bandwidth: self.bandwidth,
            latency_ns,
            loss,
        })
    }
}

fn relax(
    best: &mut [Option<(u64, f64)>],
    heap: &mut BinaryHeap<Reverse<(u64, usize)>>,
    node: usize,
    latency: u64,
    survive: f64,
) {
    if best[node].is_none_or(|(known, _)| latency < known) {
        best[node] = Some((latency, survive));
        heap.push(Reverse((latency, node)));
    }
}

fn attribute(line: usize, key: &'static str, reason: &str) -> GraphError {
    GraphError::Attribute {
        line,
        key,
        reason: reason.to_owned(),
    }
}

/// The item `key` of a node or edge list (the last one if repeated).
fn lookup<'a>(list: &'a [Item], key: &str) -> Option<&'a Item> {
    list.iter().rev().find(|item| item.key == key)
}

fn int(list: &[Item], key: &'static str, line: usize) -> Result<i64, GraphError> {
    match lookup(list, key) {
        Some(Item {
            value: Value::Int(value),
            ..
        }) => Ok(*value),
        Some(item) => Err(attribute(item.line, key, "must be an integer")),
        None => Err(attribute(line, key, "missing")),
    }
}

fn string<'a>(list: &'a [Item], key: &'static str) -> Result<Option<(&'a str, usize)>, GraphError> {
    match lookup(list, key) {
        Some(Item {
            value: Value::Str(text),
            line,
            ..
        }) => Ok(Some((text, *line))),
        Some(item) => Err(attribute(
            item.line,
            key,
            "must be a quoted string with a unit",
        )),
        None => Ok(None),
    }
}

fn bandwidth(list: &[Item], key: &'static str, line: usize) -> Result<u64, GraphError> {
    let (text, at) = string(list, key)?.ok_or_else(|| attribute(line, key, "missing"))?;
    units::bandwidth(text).map_err(|error| attribute(at, key, &error.to_string()))
}

fn duration(list: &[Item], key: &'static str) -> Result<Option<u64>, GraphError> {
    match string(list, key)? {
        Some((text, at)) => units::duration_ns(text)
            .map(Some)
            .map_err(|error| attribute(at, key, &error.to_string())),
        None => Ok(None),
    }
}

fn loss(list: &[Item]) -> Result<f64, GraphError> {
    let (value, at) = match lookup(list, "packet_loss") {
        None => return Ok(0.0),
        Some(Item {
            value: Value::Int(value),
            line,
            ..
        }) => (*value as f64, *line),
        Some(Item {
            value: Value::Real(value),
            line,
            ..
        }) => (*value, *line),
        Some(item) => return Err(attribute(item.line, "packet_loss", "must be a number")),
    };
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(attribute(at, "packet_loss", "must be in [0, 1]"))
    }
}
