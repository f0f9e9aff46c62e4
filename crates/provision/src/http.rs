//! A small HTTP/1.1 client for the RabbitMQ management API: one connection per request,
//! JSON bodies, basic auth. hyper is already in the tree for the proxy, so this costs no
//! extra dependency.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

use crate::error::{BoxError, msg};

/// Base64 (standard alphabet, padded), for the `Authorization: Basic` header.
pub(crate) fn base64(input: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Sends one request to `base` (`http://host:port[/prefix]`) + `path`.
pub(crate) async fn request(
    base: &url::Url,
    auth: &str,
    method: Method,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<(StatusCode, Bytes), BoxError> {
    if base.scheme() != "http" {
        return Err(msg(format!(
            "only http:// management URLs are supported (got {}://)",
            base.scheme()
        )));
    }
    let host = base
        .host_str()
        .ok_or_else(|| msg("the management URL has no host"))?;
    let port = base.port_or_known_default().unwrap_or(15672);
    let stream = tokio::net::TcpStream::connect((host, port)).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let prefix = base.path().trim_end_matches('/');
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let req = Request::builder()
        .method(method)
        .uri(format!("{prefix}{path}"))
        .header(hyper::header::HOST, format!("{host}:{port}"))
        .header(hyper::header::AUTHORIZATION, format!("Basic {auth}"))
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("guest:guest", "Z3Vlc3Q6Z3Vlc3Q="),
        ] {
            assert_eq!(super::base64(i.as_bytes()), o);
        }
    }
}
