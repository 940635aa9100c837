//! The client against a scripted endpoint on a real loopback socket: framing, reuse
//! and failures as an endpoint can produce them.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use http::{StatusCode, header};

use super::*;
use crate::codec::framing::Chunked;

/// One scripted answer: the bytes, whether to send them a byte at a time, and
/// whether to close the connection after them.
struct Answer {
    bytes: Vec<u8>,
    trickle: bool,
    close: bool,
}

fn answer(bytes: &[u8]) -> Answer {
    Answer {
        bytes: bytes.to_vec(),
        trickle: false,
        close: false,
    }
}

/// An answer after which the endpoint closes the connection.
fn closing(bytes: &[u8]) -> Answer {
    Answer {
        close: true,
        ..answer(bytes)
    }
}

/// An endpoint that reads one request head per answer and sends the answer. Returns
/// the request heads it read.
async fn endpoint(answers: Vec<Answer>) -> (SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.expect("accept");
        sock.set_nodelay(true).expect("nodelay");
        let mut heads = Vec::new();
        let mut pending = Vec::new();
        for a in answers {
            while !pending.windows(4).any(|w| w == b"\r\n\r\n") {
                let mut chunk = [0u8; 4096];
                let n = sock.read(&mut chunk).await.expect("read");
                if n == 0 {
                    return heads;
                }
                pending.extend_from_slice(&chunk[..n]);
            }
            let end = pending.windows(4).position(|w| w == b"\r\n\r\n").expect("head end") + 4;
            heads.push(String::from_utf8_lossy(&pending[..end]).into_owned());
            pending.drain(..end);
            if a.trickle {
                for b in &a.bytes {
                    sock.write_all(std::slice::from_ref(b)).await.expect("write");
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            } else {
                sock.write_all(&a.bytes).await.expect("write");
            }
            if a.close {
                return heads;
            }
        }
        // Hold the connection until the client is done with it.
        let _ = sock.read(&mut [0u8; 1]).await;
        heads
    });
    (addr, task)
}

async fn connect(addr: SocketAddr) -> H1Conn {
    H1Conn::new(Stream::Plain(TcpStream::connect(addr).await.expect("connect")))
}

fn request(method: Method, path: &str) -> Request<RequestBody> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "app.example")
        .body(RequestBody::Empty)
        .expect("request")
}

/// Reads a whole body: its data and its trailers.
async fn body(conn: &mut H1Conn, framing: &mut Framing) -> Result<(Vec<u8>, Option<HeaderMap>), Error> {
    let mut data = Vec::new();
    let mut trailers = None;
    while let Some(frame) = std::future::poll_fn(|cx| conn.poll_body(cx, framing)).await {
        match frame?.into_data() {
            Ok(d) => data.extend_from_slice(&d),
            Err(f) => trailers = f.into_trailers().ok(),
        }
    }
    Ok((data, trailers))
}

/// One exchange: the head, the body as text, and whether the connection may be reused.
async fn exchange(conn: &mut H1Conn, req: Request<RequestBody>) -> Result<(Response<()>, String, bool), Error> {
    let head = match conn.send(req, Extra::default(), None).await {
        Ok(head) => head,
        Err(Failure::Unsent(_)) => return Err(Error::Closed),
        Err(Failure::Failed { error, .. }) => return Err(error),
    };
    let mut framing = head.framing;
    let (data, _) = body(conn, &mut framing).await?;
    Ok((
        head.response,
        String::from_utf8(data).expect("utf-8"),
        head.reusable && conn.clean(),
    ))
}

#[tokio::test]
async fn content_length_body_then_the_connection_serves_again() {
    let ok =
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Served-By: a\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nhello";
    let (addr, heads) = endpoint(vec![answer(ok), answer(ok)]).await;
    let mut conn = connect(addr).await;
    for path in ["/first?q=1", "/second"] {
        let (resp, text, reusable) = exchange(&mut conn, request(Method::GET, path)).await.expect("exchange");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["x-served-by"], "a");
        assert_eq!(resp.headers().get_all(header::SET_COOKIE).iter().count(), 2);
        // Nothing of the request's headers is left in the response's.
        assert_eq!(resp.headers().len(), 4);
        assert!(!resp.headers().contains_key(header::HOST));
        assert_eq!(text, "hello");
        assert!(reusable);
        assert!(conn.usable());
    }
    drop(conn);
    let heads = heads.await.expect("endpoint");
    assert!(heads[0].starts_with("GET /first?q=1 HTTP/1.1\r\n"), "{heads:?}");
    assert!(heads[0].contains("host: app.example\r\n"), "{heads:?}");
    // A bodiless GET gets no framing headers.
    assert!(!heads[1].contains("content-length") && !heads[1].contains("transfer-encoding"));
}

#[tokio::test]
async fn bodiless_post_says_so() {
    let (addr, heads) = endpoint(vec![answer(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")]).await;
    let mut conn = connect(addr).await;
    let (resp, text, reusable) = exchange(&mut conn, request(Method::POST, "/")).await.expect("exchange");
    assert_eq!(
        (resp.status(), text.as_str(), reusable),
        (StatusCode::CREATED, "", true)
    );
    drop(conn);
    assert!(heads.await.expect("endpoint")[0].contains("content-length: 0\r\n"));
}

#[tokio::test]
async fn chunked_body_with_extensions_and_trailers_arriving_a_byte_at_a_time() {
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;name=value\r\nhello\r\n6\r\n world\r\nB\r\n 0123456789\r\n0\r\nX-Checksum: abc\r\n\r\n";
    let (addr, _heads) = endpoint(vec![
        Answer {
            trickle: true,
            ..answer(chunked)
        },
        answer(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext"),
    ])
    .await;
    let mut conn = connect(addr).await;
    let head = conn
        .send(request(Method::GET, "/"), Extra::default(), None)
        .await
        .ok()
        .expect("head");
    assert_eq!(head.framing, Framing::Chunked(Chunked::Size));
    let mut framing = head.framing;
    let (data, trailers) = body(&mut conn, &mut framing).await.expect("body");
    assert_eq!(data, b"hello world 0123456789");
    assert_eq!(trailers.expect("trailers")["x-checksum"], "abc");
    assert!(head.reusable && conn.clean());
    // The decoder stopped exactly at the end: the next response parses.
    let (_, text, _) = exchange(&mut conn, request(Method::GET, "/")).await.expect("second");
    assert_eq!(text, "next");
}

#[tokio::test]
async fn informational_responses_are_skipped() {
    let (addr, _heads) = endpoint(vec![answer(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n\
          HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    )])
    .await;
    let mut conn = connect(addr).await;
    let (resp, text, reusable) = exchange(&mut conn, request(Method::GET, "/")).await.expect("exchange");
    assert_eq!((resp.status(), text.as_str(), reusable), (StatusCode::OK, "ok", true));
    assert!(!resp.headers().contains_key(header::LINK));
}

#[tokio::test]
async fn head_204_and_304_have_no_body_whatever_their_headers_say() {
    let (addr, _heads) = endpoint(vec![
        answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"),
        answer(b"HTTP/1.1 204 No Content\r\n\r\n"),
        answer(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nETag: \"x\"\r\n\r\n"),
        answer(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlast"),
    ])
    .await;
    let mut conn = connect(addr).await;
    let (resp, text, reusable) = exchange(&mut conn, request(Method::HEAD, "/")).await.expect("head");
    assert_eq!((text.as_str(), reusable), ("", true));
    // The length of the body a GET would have had is passed on.
    assert_eq!(resp.headers()[header::CONTENT_LENGTH], "10");
    for status in [StatusCode::NO_CONTENT, StatusCode::NOT_MODIFIED] {
        let (resp, text, reusable) = exchange(&mut conn, request(Method::GET, "/")).await.expect("bodiless");
        assert_eq!((resp.status(), text.as_str(), reusable), (status, "", true));
    }
    let (_, text, _) = exchange(&mut conn, request(Method::GET, "/")).await.expect("last");
    assert_eq!(text, "last");
}

#[tokio::test]
async fn body_without_length_runs_to_the_close_and_ends_the_connection() {
    let (addr, _heads) = endpoint(vec![closing(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it, until the close",
    )])
    .await;
    let mut conn = connect(addr).await;
    let (_, text, reusable) = exchange(&mut conn, request(Method::GET, "/")).await.expect("exchange");
    assert_eq!(text, "all of it, until the close");
    assert!(!reusable);
}

#[tokio::test]
async fn transfer_encoding_wins_over_content_length_and_the_connection_is_not_reused() {
    let (addr, _heads) = endpoint(vec![answer(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
    )])
    .await;
    let mut conn = connect(addr).await;
    let (_, text, reusable) = exchange(&mut conn, request(Method::GET, "/")).await.expect("exchange");
    assert_eq!(text, "abcd");
    assert!(!reusable);
}

#[tokio::test]
async fn content_length_copies_must_agree() {
    let (addr, _heads) = endpoint(vec![answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok")]).await;
    let mut conn = connect(addr).await;
    let (_, text, _) = exchange(&mut conn, request(Method::GET, "/"))
        .await
        .expect("equal copies");
    assert_eq!(text, "ok");

    for bad in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
    ] {
        let (addr, _heads) = endpoint(vec![answer(bad)]).await;
        let mut conn = connect(addr).await;
        let err = exchange(&mut conn, request(Method::GET, "/")).await.err();
        assert!(matches!(err, Some(Error::Invalid(_))), "{err:?}");
    }
}

#[tokio::test]
async fn the_endpoint_decides_whether_the_connection_stays_open() {
    for (bytes, expected) in [
        (&b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"[..], false),
        (
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            false,
        ),
        (
            b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\nContent-Length: 2\r\n\r\nok",
            false,
        ),
    ] {
        let (addr, _heads) = endpoint(vec![answer(bytes)]).await;
        let mut conn = connect(addr).await;
        let (_, text, reusable) = exchange(&mut conn, request(Method::GET, "/")).await.expect("exchange");
        assert_eq!(text, "ok");
        assert_eq!(reusable, expected, "{}", String::from_utf8_lossy(bytes));
    }
}

#[tokio::test]
async fn a_body_cut_short_is_an_error_not_an_end() {
    for bytes in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcd"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXX",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ] {
        let (addr, _heads) = endpoint(vec![closing(bytes)]).await;
        let mut conn = connect(addr).await;
        let err = exchange(&mut conn, request(Method::GET, "/")).await.err();
        assert!(
            matches!(err, Some(Error::Incomplete | Error::Invalid(_))),
            "{err:?} for {}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[tokio::test]
async fn a_request_comes_back_whole_only_when_no_answer_came() {
    let (addr, _heads) = endpoint(vec![closing(b"")]).await;
    let mut conn = connect(addr).await;
    match conn.send(request(Method::GET, "/again"), Extra::default(), None).await {
        Err(Failure::Failed {
            error: Error::Closed,
            request: Some(req),
        }) => {
            assert_eq!(req.uri(), "/again");
            // Its headers too: the map is lent to the response only once one arrives.
            assert_eq!(req.headers()[header::HOST], "app.example");
        }
        Err(Failure::Failed { error, .. }) => panic!("unexpected error {error}"),
        _ => panic!("expected a failure with the request back"),
    }

    for (bytes, what) in [
        (&b"HTTP/1.1 2000 OK\r\n\r\n"[..], "status"),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not HTTP"),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
            "unasked upgrade",
        ),
    ] {
        let (addr, _heads) = endpoint(vec![answer(bytes)]).await;
        let mut conn = connect(addr).await;
        let failed = matches!(
            conn.send(request(Method::GET, "/"), Extra::default(), None).await,
            Err(Failure::Failed { request: None, .. })
        );
        assert!(failed, "{what}");
    }
}

#[tokio::test]
async fn a_head_too_large_is_refused() {
    let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
    while big.len() <= MAX_HEAD {
        big.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
    }
    big.extend_from_slice(b"\r\n");
    let (addr, _heads) = endpoint(vec![answer(&big)]).await;
    let mut conn = connect(addr).await;
    let err = exchange(&mut conn, request(Method::GET, "/")).await.err();
    assert!(matches!(err, Some(Error::HeadTooLarge)), "{err:?}");
}

#[tokio::test]
async fn an_idle_connection_the_endpoint_closed_is_not_usable() {
    let (addr, _heads) = endpoint(vec![closing(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")]).await;
    let mut conn = connect(addr).await;
    let (_, _, reusable) = exchange(&mut conn, request(Method::GET, "/")).await.expect("exchange");
    // The endpoint promised keep-alive, then closed anyway while the connection idled.
    assert!(reusable);
    let mut usable = true;
    for _ in 0..200 {
        usable = conn.usable();
        if !usable {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!usable);
}

/// A connection one serving thread's event loop opened, taken by another thread from
/// the pool, is moved to the taker's loop and carries the next exchange there, on the
/// same socket and with nothing of its state lost.
#[tokio::test]
async fn a_connection_moved_to_another_event_loop_serves_there() {
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    let (addr, heads) = endpoint(vec![answer(ok), answer(ok)]).await;
    let (conn_tx, conn_rx) = tokio::sync::oneshot::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    // Another thread with an event loop of its own, kept running throughout.
    let other = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        crate::upstream::set_worker(0);
        rt.block_on(async {
            let mut conn = connect(addr).await;
            assert_eq!(conn.home(), 0);
            let (_, text, reusable) = exchange(&mut conn, request(Method::GET, "/there"))
                .await
                .expect("exchange");
            assert!(text == "hello" && reusable);
            let _ = conn_tx.send(conn);
        });
        let _ = done_rx.recv();
    });
    let conn = conn_rx.await.expect("the other thread's connection");
    crate::upstream::set_worker(1);
    let Some(mut conn) = conn.rehome() else {
        panic!("a plain connection is moved");
    };
    assert_eq!(conn.home(), 1, "the connection now belongs to this thread's event loop");
    let (resp, text, reusable) = exchange(&mut conn, request(Method::GET, "/here"))
        .await
        .expect("exchange");
    assert_eq!(
        (resp.status(), text.as_str(), reusable),
        (StatusCode::OK, "hello", true)
    );
    assert!(conn.usable());
    drop(conn);
    drop(done_tx);
    other.join().expect("other thread");
    // One connection accepted, both requests on it.
    let heads = heads.await.expect("endpoint");
    assert!(
        heads[0].starts_with("GET /there ") && heads[1].starts_with("GET /here "),
        "{heads:?}"
    );
}

/// A consumer that comes back slowly for a large body's frames makes the client read
/// small again and let go of its large buffer: what one slow reader pins stays near
/// `MIN_READ`, not `MAX_READ`.
#[tokio::test]
async fn a_slow_consumer_of_a_large_body_gets_small_reads_and_a_small_buffer() {
    const LEN: usize = 4 << 20;
    let mut bytes = format!("HTTP/1.1 200 OK\r\nContent-Length: {LEN}\r\n\r\n").into_bytes();
    bytes.resize(bytes.len() + LEN, b'x');
    let (addr, _heads) = endpoint(vec![answer(&bytes)]).await;
    let mut conn = connect(addr).await;
    let head = match conn.send(request(Method::GET, "/big"), Extra::default(), None).await {
        Ok(head) => head,
        Err(_) => panic!("no response head"),
    };
    let mut framing = head.framing;
    let mut next = async |conn: &mut H1Conn| {
        let frame = std::future::poll_fn(|cx| conn.poll_body(cx, &mut framing)).await;
        frame.expect("a frame").expect("data").into_data().expect("data").len()
    };
    // Taken at once, frames grow towards MAX_READ as reads fill.
    let mut got = 0;
    while conn.read_size < MAX_READ && got < LEN / 2 {
        got += next(&mut conn).await;
    }
    assert_eq!(conn.read_size, MAX_READ);
    // Taken slowly, reads fall back to MIN_READ and the buffer shrinks with them.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(u64::from(SLOW_CONSUMER_MS) * 2)).await;
        let n = next(&mut conn).await;
        got += n;
        let min = MIN_READ as usize;
        assert!(n <= 2 * min, "a frame of {n} bytes after a slow take");
        assert!(
            conn.buf.capacity() <= 4 * min,
            "buffer of {} bytes",
            conn.buf.capacity()
        );
    }
    assert!(got < LEN);
}
