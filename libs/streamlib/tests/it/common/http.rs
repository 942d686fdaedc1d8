//! A minimal keep-alive HTTP/1.1 client over one TCP connection (hyper), for API tests and the
//! API benchmark.
#![allow(dead_code)]

use std::net::SocketAddr;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

/// One connection to an API server.
pub struct Client {
    sender: SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    token: Option<String>,
}

/// A response: status, headers, and the body parsed as JSON (`Null` when empty).
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: serde_json::Value,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        Self {
            sender,
            addr,
            token: None,
        }
    }

    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_string());
        self
    }

    /// Sends a request and returns the body unparsed (the benchmark times only the round trip).
    pub async fn send_raw(
        &mut self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, HeaderMap, Bytes) {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        if let Some(token) = &self.token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(v) => {
                builder = builder.header("content-type", "application/json");
                Full::new(Bytes::from(serde_json::to_vec(&v).unwrap()))
            }
            None => Full::new(Bytes::new()),
        };
        self.sender.ready().await.unwrap();
        let response = self
            .sender
            .send_request(builder.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, bytes)
    }

    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Reply {
        let (status, headers, bytes) = self.send_raw(method, path, body).await;
        let json = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        Reply {
            status,
            headers,
            json,
        }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }
    pub async fn post(&mut self, path: &str, body: serde_json::Value) -> Reply {
        self.send(Method::POST, path, Some(body)).await
    }
    pub async fn delete(&mut self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None).await
    }
}
