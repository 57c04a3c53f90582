//! Connection commands: PING, ECHO, HELLO, QUIT, SELECT, CLIENT.

use bytes::Bytes;
use resp::{Protocol, Reply};

use super::{help, int_arg, is, owned};
use crate::errors;
use crate::node::REDIS_COMPAT_VERSION;
use crate::table::Ctx;

/// PING [message]
pub fn ping(_ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    match args.len() {
        1 => Reply::simple("PONG"),
        2 => Reply::Bulk(args[1].clone()),
        _ => errors::arity("ping"),
    }
}

/// ECHO message
pub fn echo(_ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    Reply::Bulk(args[1].clone())
}

/// HELLO [protover [AUTH username password] [SETNAME clientname]]
///
/// Authentication is out of scope: like Redis with the default `nopass` user, any AUTH is
/// accepted.
pub fn hello(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let mut protocol = ctx.session.protocol;
    if let Some(version) = args.get(1) {
        protocol = match int_arg(version) {
            Ok(2) => Protocol::Resp2,
            Ok(3) => Protocol::Resp3,
            Ok(_) => return Reply::error("NOPROTO unsupported protocol version"),
            Err(_) => {
                return Reply::error("ERR Protocol version is not an integer or out of range")
            }
        };
    }
    let mut name = None;
    let mut i = 2;
    while i < args.len() {
        if is(&args[i], "auth") && i + 2 < args.len() {
            if let Err(reply) = check_credentials(&args[i + 1]) {
                return reply;
            }
            i += 3;
        } else if is(&args[i], "setname") && i + 1 < args.len() {
            if let Err(reply) = check_name(&args[i + 1]) {
                return reply;
            }
            name = Some(owned(&args[i + 1]));
            i += 2;
        } else {
            return Reply::error_owned(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(&args[i])
            ));
        }
    }
    if let Some(name) = name {
        set_names(ctx, |n| n.name = name);
    }
    ctx.session.set_protocol(protocol);
    Reply::Map(vec![
        (Reply::bulk_static(b"server"), Reply::bulk_static(b"redis")),
        (
            Reply::bulk_static(b"version"),
            Reply::bulk_static(REDIS_COMPAT_VERSION.as_bytes()),
        ),
        (
            Reply::bulk_static(b"proto"),
            Reply::Integer(protocol.version()),
        ),
        (
            Reply::bulk_static(b"id"),
            Reply::Integer(ctx.session.info.id as i64),
        ),
        (
            Reply::bulk_static(b"mode"),
            Reply::bulk_static(b"standalone"),
        ),
        (Reply::bulk_static(b"role"), Reply::bulk_static(b"master")),
        (Reply::bulk_static(b"modules"), Reply::Array(vec![])),
    ])
}

/// Authentication is out of scope: like Redis's default user with `nopass`, the user
/// `default` is accepted with any password and every other user is refused.
fn check_credentials(user: &[u8]) -> Result<(), Reply> {
    if user == b"default" {
        Ok(())
    } else {
        Err(Reply::error(
            "WRONGPASS invalid username-password pair or user is disabled.",
        ))
    }
}

/// AUTH [username] password
pub fn auth(_ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    match args.len() {
        2 => Reply::error(
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        ),
        3 => check_credentials(&args[1]).map_or_else(|e| e, |()| Reply::ok()),
        _ => errors::syntax(),
    }
}

/// QUIT
pub fn quit(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> Reply {
    ctx.session.quit = true;
    Reply::ok()
}

/// SELECT index (only database 0 exists)
pub fn select(_ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    match int_arg(&args[1]) {
        Ok(0) => Reply::ok(),
        Ok(_) => Reply::error("ERR DB index is out of range"),
        Err(reply) => reply,
    }
}

/// Client names may not contain spaces, newlines or special characters (as Redis).
fn check_name(name: &[u8]) -> Result<(), Reply> {
    if name.iter().all(|&c| (b'!'..=b'~').contains(&c)) {
        Ok(())
    } else {
        Err(Reply::error(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ))
    }
}

fn set_names(ctx: &mut Ctx<'_>, f: impl FnOnce(&mut crate::node::ClientNames)) {
    let mut names = ctx
        .session
        .info
        .names
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    f(&mut names);
}

/// CLIENT ID | SETNAME | GETNAME | LIST | INFO | SETINFO | NO-EVICT | NO-TOUCH | HELP
pub fn client(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let sub = args[1].to_ascii_lowercase();
    let argc = args.len();
    match (sub.as_slice(), argc) {
        (b"id", 2) => Reply::Integer(ctx.session.info.id as i64),
        (b"setname", 3) => match check_name(&args[2]) {
            Ok(()) => {
                let name = owned(&args[2]);
                set_names(ctx, |n| n.name = name);
                Reply::ok()
            }
            Err(reply) => reply,
        },
        (b"getname", 2) => {
            let name = ctx
                .session
                .info
                .names
                .lock()
                .map(|n| n.name.clone())
                .unwrap_or_default();
            if name.is_empty() {
                Reply::Nil
            } else {
                Reply::Bulk(name)
            }
        }
        (b"list", _) => client_list(ctx, &args[2..]),
        (b"info", 2) => {
            let mut text = ctx.session.info.describe();
            text.push('\n');
            Reply::Verbatim("txt", Bytes::from(text))
        }
        (b"setinfo", 4) => {
            let value = owned(&args[3]);
            if !value.iter().all(|&c| (b'!'..=b'~').contains(&c)) {
                return Reply::error_owned(format!(
                    "ERR {} cannot contain spaces, newlines or special characters.",
                    String::from_utf8_lossy(&args[2])
                ));
            }
            if is(&args[2], "lib-name") {
                set_names(ctx, |n| n.lib_name = value);
            } else if is(&args[2], "lib-ver") {
                set_names(ctx, |n| n.lib_ver = value);
            } else {
                return Reply::error_owned(format!(
                    "ERR Unrecognized option '{}'",
                    String::from_utf8_lossy(&args[2])
                ));
            }
            Reply::ok()
        }
        (b"no-evict" | b"no-touch", 3) if is(&args[2], "on") || is(&args[2], "off") => Reply::ok(),
        (b"help", 2) => help(&[
            "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "ID",
            "    Return the ID of the current connection.",
            "GETNAME",
            "    Return the name of the current connection.",
            "SETNAME <name>",
            "    Assign the name <name> to the current connection.",
            "LIST [TYPE normal] [ID <id> ...]",
            "    Return information about client connections.",
            "INFO",
            "    Return information about the current client connection.",
            "SETINFO <option> <value>",
            "    Set client meta attr (LIB-NAME or LIB-VER).",
        ]),
        (
            b"id" | b"setname" | b"getname" | b"info" | b"setinfo" | b"help" | b"no-evict"
            | b"no-touch",
            _,
        ) => Reply::error_owned(format!(
            "ERR wrong number of arguments for 'client|{}' command",
            String::from_utf8_lossy(&sub)
        )),
        _ => errors::unknown_subcommand("client", &args[1]),
    }
}

/// CLIENT LIST [TYPE normal|master|replica|pubsub] | [ID id ...]
fn client_list(ctx: &mut Ctx<'_>, filter: &[Bytes]) -> Reply {
    let mut ids: Option<Vec<u64>> = None;
    match filter {
        [] => {}
        [word, kind] if is(word, "type") => {
            let kind = kind.to_ascii_lowercase();
            match kind.as_slice() {
                b"normal" => {}
                // No replicas, masters or subscribers exist on this node.
                b"master" | b"replica" | b"slave" | b"pubsub" => {
                    return Reply::Verbatim("txt", Bytes::new())
                }
                _ => {
                    return Reply::error_owned(format!(
                        "ERR Unknown client type '{}'",
                        String::from_utf8_lossy(&kind)
                    ))
                }
            }
        }
        [word, rest @ ..] if is(word, "id") && !rest.is_empty() => {
            let mut wanted = Vec::new();
            for id in rest {
                match int_arg(id) {
                    // Ids start at 1: zero or negative ids match nobody, as in Redis.
                    Ok(n) => wanted.push(u64::try_from(n).unwrap_or(0)),
                    Err(_) => return Reply::error("ERR Invalid client ID"),
                }
            }
            ids = Some(wanted);
        }
        _ => return errors::syntax(),
    }
    let mut text = String::new();
    for client in ctx.node.clients() {
        if ids.as_ref().is_none_or(|ids| ids.contains(&client.id)) {
            text.push_str(&client.describe());
            text.push('\n');
        }
    }
    Reply::Verbatim("txt", Bytes::from(text))
}
