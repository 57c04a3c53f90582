//! `ringcache demo`: a local cluster (6 nodes, 3 shards of a primary and a replica by
//! default) as child processes on loopback, created, checked and explained; Ctrl-C stops it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// `ringcache demo` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Nodes to start.
    #[arg(long, default_value_t = 6)]
    pub nodes: usize,
    /// Replicas per shard.
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// RESP port of the first node (the others follow); bus ports are these + 10000.
    #[arg(long, default_value_t = 7000)]
    pub base_port: u16,
    /// memcached port of the first node.
    #[arg(long, default_value_t = 12000)]
    pub memcache_base_port: u16,
    /// Forwarding RESP port (any key, no cluster support needed) of the first node.
    #[arg(long, default_value_t = 8000)]
    pub forward_base_port: u16,
    /// Admin HTTP port of the first node.
    #[arg(long, default_value_t = 9100)]
    pub admin_base_port: u16,
    /// Memory budget of each node.
    #[arg(long, default_value = "256mb")]
    pub maxmemory: String,
    /// Where the nodes keep their data dirs and logs [default: a new temporary dir].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Start, print, and exit at once, leaving the nodes running (for scripts; stop them with
    /// the printed command).
    #[arg(long)]
    pub detach: bool,
}

struct Node {
    port: u16,
    /// The `ringcache server` arguments it was started with, to print how to start it again.
    args: Vec<String>,
    child: Child,
    /// Set once it has exited (and the user was told).
    exited: bool,
}

fn stop(nodes: &mut [Node]) {
    // SIGINT: the whole cluster stops, so no primary hands its slots to a replica first.
    // A node that already exited is skipped: its pid may belong to another process by now.
    for n in nodes.iter().filter(|n| !n.exited) {
        let _ = Command::new("kill")
            .args(["-INT", &n.child.id().to_string()])
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for n in nodes.iter_mut() {
        while Instant::now() < deadline {
            if let Ok(Some(_)) = n.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = n.child.kill();
        let _ = n.child.wait();
    }
}

fn wait_for_ping(port: u16, deadline: Instant) -> anyhow::Result<()> {
    let addr = format!("127.0.0.1:{port}");
    loop {
        if let Ok(mut c) = crate::resp_client::Conn::connect(&addr, Duration::from_millis(500)) {
            if c.call(&["PING"]).is_ok() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("node on port {port} did not start; see its log");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the demo prints when one of its nodes exits: the cluster goes on without it (its
/// replica takes over if it was a primary), and the exact command that starts it again, in
/// the background, with its log and data dir, so it rejoins as a replica.
fn exit_notice(
    node: &Node,
    exe: &std::path::Path,
    dir: &std::path::Path,
    status: &std::process::ExitStatus,
    first_port: u16,
) -> String {
    let log = dir.join(format!("node-{}.log", node.port));
    format!(
        "\nnode {port} exited ({status}). The other nodes keep running; if it was a primary, \
         its replica takes over its slots.\n  \
         watch:    {exe} cluster status 127.0.0.1:{first_port}\n  \
         restart:  {exe} {args} >>{log} 2>&1 &\n\
         Restarted, it rejoins as a replica (stop it yourself: Ctrl-C here stops only the \
         nodes the demo started).",
        port = node.port,
        exe = exe.display(),
        args = node.args.join(" "),
        log = log.display(),
    )
}

/// Runs the demo until Ctrl-C (or returns at once with `--detach`).
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.nodes < args.replicas + 1 {
        bail!(
            "{} nodes can't hold shards of {} nodes",
            args.nodes,
            args.replicas + 1
        );
    }
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("ringcache-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let exe = std::env::current_exe().context("finding the ringcache binary")?;
    let mut nodes = Vec::new();
    let started = (|| -> anyhow::Result<()> {
        for i in 0..args.nodes as u16 {
            let port = args.base_port + i;
            let node_dir = dir.join(format!("node-{port}"));
            std::fs::create_dir_all(&node_dir)?;
            let log = std::fs::File::create(dir.join(format!("node-{port}.log")))?;
            let server_args: Vec<String> = [
                "server",
                "--cluster-enabled",
                "--port",
                &port.to_string(),
                "--memcache-port",
                &(args.memcache_base_port + i).to_string(),
                "--forward-port",
                &(args.forward_base_port + i).to_string(),
                "--admin-port",
                &(args.admin_base_port + i).to_string(),
                "--maxmemory",
                &args.maxmemory,
                "--log",
                "warn",
                "--dir",
                &node_dir.display().to_string(),
            ]
            .iter()
            .map(|a| a.to_string())
            .collect();
            let child = Command::new(&exe)
                .args(&server_args)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting node {port}"))?;
            nodes.push(Node {
                port,
                args: server_args,
                child,
                exited: false,
            });
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for n in &nodes {
            wait_for_ping(n.port, deadline)?;
        }
        Ok(())
    })();
    if let Err(e) = started {
        stop(&mut nodes);
        return Err(e);
    }
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let created = rt.block_on(async {
        let id = crate::create(&addrs, args.replicas, Duration::from_secs(30)).await?;
        let state = crate::topology(&addrs[0]).await?;
        let table = crate::render_status(&state, &crate::statuses(&state).await);
        anyhow::Ok((id, table))
    });
    let (cluster_id, table) = match created {
        Ok(x) => x,
        Err(e) => {
            stop(&mut nodes);
            return Err(e.context(format!(
                "creating the cluster (node logs in {})",
                dir.display()
            )));
        }
    };
    let first = args.base_port;
    println!(
        "ringcache demo: {} nodes, {} shards of {} (cluster {cluster_id})\n",
        args.nodes,
        args.nodes / (args.replicas + 1),
        args.replicas + 1
    );
    print!("{table}");
    println!(
        "\nConnect:\n  \
         redis-cli -c -p {first}                       Redis Cluster clients (follow MOVED)\n  \
         redis-cli -p {fwd}                          any key through any node (forwarding port)\n  \
         printf 'set k 0 0 1\\r\\nv\\r\\nget k\\r\\n' | nc 127.0.0.1 {mc}   memcached, any node\n  \
         curl http://127.0.0.1:{admin}/metrics         metrics of the first node\n  \
         ringcache cluster status 127.0.0.1:{first}    the cluster at a glance\n\n\
         Node logs and data: {}",
        dir.display(),
        fwd = args.forward_base_port,
        mc = args.memcache_base_port,
        admin = args.admin_base_port,
    );
    if args.detach {
        let pids: Vec<String> = nodes.iter().map(|n| n.child.id().to_string()).collect();
        println!(
            "Detached. Stop the nodes with: kill -INT {}",
            pids.join(" ")
        );
        return Ok(());
    }
    println!(
        "Ctrl-C stops all nodes. Kill one (kill -9 a primary) to watch a failover: the others \
         keep running."
    );
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return anyhow::Ok(()),
                _ = term.recv() => return Ok(()),
                _ = tick.tick() => {
                    for n in nodes.iter_mut().filter(|n| !n.exited) {
                        if let Ok(Some(status)) = n.child.try_wait() {
                            n.exited = true;
                            println!("{}", exit_notice(n, &exe, &dir, &status, first));
                        }
                    }
                }
            }
        }
    })?;
    println!(
        "stopping {} nodes",
        nodes.iter().filter(|n| !n.exited).count()
    );
    stop(&mut nodes);
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
