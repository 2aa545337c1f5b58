//! The accepted socket as the gRPC server sees it: the kernel's record of
//! the peer (`SO_PEERCRED`), and the client's HTTP/2 header blocks with an
//! unusable `:authority` put right.
//!
//! Since 1.57, gRPC's C core (grpcio, so py-spiffe) sends the socket path,
//! percent-encoded, as the `:authority` of a call over a Unix socket. That
//! is no valid authority, and the HTTP/2 server under tonic resets every
//! such stream. The Workload API exists for exactly those clients, so each
//! header block from the client is decoded (HPACK), an `:authority` that
//! does not parse becomes `localhost`, and the block is encoded again for
//! the server. Every other frame passes unchanged, and nothing from the
//! server to the client is touched.

use std::borrow::Cow;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tokio::net::unix::UCred;

/// The connection preface every HTTP/2 client sends first.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Largest frame payload: the server's `SETTINGS_MAX_FRAME_SIZE` (the default).
const MAX_FRAME: usize = 16_384;
/// Largest header block (all its fragments), encoded and decoded.
const MAX_BLOCK: usize = 64 * 1024;

const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// The caller's credentials as the kernel gave them at `connect`, put in
/// every request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct PeerCred(pub Option<UCred>);

/// An accepted Unix socket, its peer credentials, and the header rewriting.
pub(crate) struct PeerStream {
    inner: UnixStream,
    cred: Option<UCred>,
    rewriter: Rewriter,
    /// Processed bytes not yet read by the server.
    out: Vec<u8>,
    out_pos: usize,
    /// This connection's place among those the endpoint allows at once,
    /// given back when it closes.
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl PeerStream {
    pub(crate) fn new(inner: UnixStream, slot: tokio::sync::OwnedSemaphorePermit) -> Self {
        let cred = inner.peer_cred().ok();
        Self {
            inner,
            cred,
            rewriter: Rewriter::new(),
            out: Vec::new(),
            out_pos: 0,
            _slot: slot,
        }
    }
}

impl tonic::transport::server::Connected for PeerStream {
    type ConnectInfo = PeerCred;

    fn connect_info(&self) -> PeerCred {
        PeerCred(self.cred)
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out_pos < this.out.len() {
                let n = (this.out.len() - this.out_pos).min(buf.remaining());
                buf.put_slice(&this.out[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.out.len() {
                    this.out.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            this.rewriter.feed(read.filled(), &mut this.out)?;
        }
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A header block being collected across HEADERS and CONTINUATION frames.
struct Block {
    stream: [u8; 4],
    end_stream: bool,
    fragments: Vec<u8>,
}

/// The client-to-server byte stream, frame by frame.
struct Rewriter {
    preface_left: usize,
    pending: Vec<u8>,
    block: Option<Block>,
    decoder: loona_hpack::Decoder<'static>,
    encoder: loona_hpack::Encoder<'static>,
}

fn malformed(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_owned())
}

impl Rewriter {
    fn new() -> Self {
        Self {
            preface_left: PREFACE.len(),
            pending: Vec::new(),
            block: None,
            decoder: loona_hpack::Decoder::new(),
            encoder: loona_hpack::Encoder::new(),
        }
    }

    /// Takes bytes from the client and appends what the server should read.
    fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        if self.preface_left > 0 {
            let n = self.preface_left.min(input.len());
            let at = PREFACE.len() - self.preface_left;
            if input[..n] != PREFACE[at..at + n] {
                return Err(malformed("not an HTTP/2 connection preface"));
            }
            out.extend_from_slice(&input[..n]);
            self.preface_left -= n;
            input = &input[n..];
        }
        self.pending.extend_from_slice(input);
        let mut start = 0;
        while self.pending.len() - start >= 9 {
            let head = &self.pending[start..start + 9];
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            if len > MAX_FRAME {
                return Err(malformed("an HTTP/2 frame larger than the server allows"));
            }
            if self.pending.len() - start < 9 + len {
                break;
            }
            let frame = self.pending[start..start + 9 + len].to_vec();
            start += 9 + len;
            self.frame(&frame, out)?;
        }
        self.pending.drain(..start);
        Ok(())
    }

    fn frame(&mut self, frame: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let (kind, flags) = (frame[3], frame[4]);
        let stream: [u8; 4] = frame[5..9].try_into().expect("four bytes");
        let payload = &frame[9..];
        match kind {
            HEADERS => {
                if self.block.is_some() {
                    return Err(malformed("HEADERS inside a header block"));
                }
                let mut fragment = payload;
                if flags & PADDED != 0 {
                    let pad = usize::from(*fragment.first().ok_or_else(|| malformed("padding"))?);
                    if pad + 1 > fragment.len() {
                        return Err(malformed("padding longer than the frame"));
                    }
                    fragment = &fragment[1..fragment.len() - pad];
                }
                if flags & PRIORITY != 0 {
                    fragment = fragment.get(5..).ok_or_else(|| malformed("priority"))?;
                }
                self.block = Some(Block {
                    stream,
                    end_stream: flags & END_STREAM != 0,
                    fragments: fragment.to_vec(),
                });
                if flags & END_HEADERS != 0 {
                    self.finish(out)?;
                }
            }
            CONTINUATION => {
                let block = self
                    .block
                    .as_mut()
                    .filter(|b| b.stream == stream)
                    .ok_or_else(|| malformed("CONTINUATION outside its header block"))?;
                if block.fragments.len() + payload.len() > MAX_BLOCK {
                    return Err(malformed("a header block too large"));
                }
                block.fragments.extend_from_slice(payload);
                if flags & END_HEADERS != 0 {
                    self.finish(out)?;
                }
            }
            _ => {
                if self.block.is_some() {
                    return Err(malformed("a frame inside a header block"));
                }
                out.extend_from_slice(frame);
            }
        }
        Ok(())
    }

    /// Decodes the collected block, mends `:authority`, and writes it
    /// encoded again as HEADERS and, when large, CONTINUATION frames.
    fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        let block = self.block.take().expect("a block in progress");
        let mut headers: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut size = 0usize;
        let mut too_large = false;
        self.decoder
            .decode_with_cb(
                &block.fragments,
                |name: Cow<'_, [u8]>, value: Cow<'_, [u8]>| {
                    size += name.len() + value.len() + 32;
                    if size > MAX_BLOCK {
                        too_large = true;
                    } else {
                        headers.push((name.into_owned(), value.into_owned()));
                    }
                },
            )
            .map_err(|e| malformed(&format!("HPACK: {e:?}")))?;
        if too_large {
            return Err(malformed("a header list too large"));
        }
        for (name, value) in &mut headers {
            if name.as_slice() == b":authority"
                && http::uri::Authority::try_from(&value[..]).is_err()
            {
                *value = b"localhost".to_vec();
            }
        }
        let encoded = self
            .encoder
            .encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        let mut chunks = encoded.chunks(MAX_FRAME).peekable();
        let mut first = true;
        if chunks.peek().is_none() {
            write_frame(
                out,
                HEADERS,
                end_flags(block.end_stream, true),
                block.stream,
                &[],
            );
        }
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            let (kind, flags) = if first {
                (HEADERS, end_flags(block.end_stream, last))
            } else {
                (CONTINUATION, if last { END_HEADERS } else { 0 })
            };
            write_frame(out, kind, flags, block.stream, chunk);
            first = false;
        }
        Ok(())
    }
}

fn end_flags(end_stream: bool, end_headers: bool) -> u8 {
    (if end_stream { END_STREAM } else { 0 }) | (if end_headers { END_HEADERS } else { 0 })
}

fn write_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: [u8; 4], payload: &[u8]) {
    let len = payload.len();
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&stream);
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_frame(encoder: &mut loona_hpack::Encoder<'_>, authority: &[u8]) -> Vec<u8> {
        let block = encoder.encode([
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":path", b"/SpiffeWorkloadAPI/FetchX509SVID"),
            (b":authority", authority),
            (b"workload.spiffe.io", b"true"),
        ]);
        let mut frame = Vec::new();
        write_frame(&mut frame, HEADERS, END_HEADERS, [0, 0, 0, 1], &block);
        frame
    }

    fn decoded(out: &[u8], decoder: &mut loona_hpack::Decoder<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
        assert_eq!(out[3], HEADERS);
        let len = usize::from(out[0]) << 16 | usize::from(out[1]) << 8 | usize::from(out[2]);
        decoder.decode(&out[9..9 + len]).unwrap()
    }

    #[test]
    fn a_socket_path_authority_becomes_localhost_and_the_rest_is_kept() {
        let mut client = loona_hpack::Encoder::new();
        let mut server = loona_hpack::Decoder::new();
        let mut rewriter = Rewriter::new();
        let mut input = PREFACE.to_vec();
        input.extend(headers_frame(&mut client, b"tmp%2Fagentauth%2Fapi.sock"));
        let data = [0, 0, 2, 0x0, END_STREAM, 0, 0, 0, 1, 7, 8];
        input.extend_from_slice(&data);
        let mut out = Vec::new();
        // Fed a byte at a time: frames split anywhere still come out whole.
        for byte in &input {
            rewriter.feed(std::slice::from_ref(byte), &mut out).unwrap();
        }
        assert_eq!(&out[..PREFACE.len()], PREFACE);
        let rest = &out[PREFACE.len()..];
        let headers = decoded(rest, &mut server);
        let authority = headers.iter().find(|(n, _)| n == b":authority").unwrap();
        assert_eq!(authority.1, b"localhost");
        assert!(
            headers
                .iter()
                .any(|(n, v)| n == b"workload.spiffe.io" && v == b"true")
        );
        assert!(rest.ends_with(&data), "the DATA frame passes unchanged");
        // A second block, indexed against the client's table, decodes the same way.
        let mut again = Vec::new();
        rewriter
            .feed(&headers_frame(&mut client, b"localhost:1"), &mut again)
            .unwrap();
        let headers = decoded(&again, &mut server);
        let authority = headers.iter().find(|(n, _)| n == b":authority").unwrap();
        assert_eq!(authority.1, b"localhost:1", "a valid authority is kept");
    }

    #[test]
    fn a_connection_without_the_preface_or_with_a_stray_continuation_is_refused() {
        let mut out = Vec::new();
        assert!(
            Rewriter::new()
                .feed(b"GET / HTTP/1.1\r\n", &mut out)
                .is_err()
        );
        let mut rewriter = Rewriter::new();
        let mut input = PREFACE.to_vec();
        write_frame(&mut input, CONTINUATION, END_HEADERS, [0, 0, 0, 1], b"x");
        assert!(rewriter.feed(&input, &mut out).is_err());
    }
}
