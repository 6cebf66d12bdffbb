//! Multipart uploads: create, send a part, complete, abort.

use base64::Engine as _;
use sha2::Digest;

use super::{Checksum, Client, Error, Part, header, xml_escape, xml_field};

impl Client {
    /// Start a multipart upload; its id and the checksum the server takes.
    pub async fn create_multipart(
        &self,
        key: &str,
        sha256_hex: &str,
    ) -> Result<(String, Checksum), Error> {
        let mut headers = self.object_headers(sha256_hex);
        headers.push(("x-amz-checksum-algorithm".into(), "SHA256".into()));
        let a = self
            .send(
                "CreateMultipartUpload",
                key,
                reqwest::Method::POST,
                &|| {
                    self.signed(
                        self.bucket.create_multipart_upload(Some(&self.creds), key),
                        &headers,
                        &[],
                    )
                },
                bytes::Bytes::new(),
            )
            .await?;
        let text = String::from_utf8_lossy(&a.body);
        let id = xml_field(&text, "UploadId").ok_or_else(|| Error::Answer {
            op: "CreateMultipartUpload",
            key: key.to_owned(),
            message: "no UploadId".into(),
        })?;
        let echoed = a
            .headers
            .get("x-amz-checksum-algorithm")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("SHA256"));
        let checksum = if echoed {
            Checksum::Sha256
        } else {
            Checksum::Md5
        };
        Ok((id, checksum))
    }

    /// Send one part.
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u16,
        data: bytes::Bytes,
        checksum: Checksum,
    ) -> Result<Part, Error> {
        let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
        let (headers, sha256) = match checksum {
            Checksum::Sha256 => {
                let s = b64(&sha2::Sha256::digest(&data));
                (
                    vec![("x-amz-checksum-sha256".to_owned(), s.clone())],
                    Some(s),
                )
            }
            Checksum::Md5 => {
                use md5::Digest as _;
                let s = b64(&md5::Md5::digest(&data));
                (vec![("content-md5".to_owned(), s)], None)
            }
        };
        let a = self
            .send(
                "UploadPart",
                key,
                reqwest::Method::PUT,
                &|| {
                    self.signed(
                        self.bucket
                            .upload_part(Some(&self.creds), key, number, upload_id),
                        &headers,
                        &[],
                    )
                },
                data.clone(),
            )
            .await?;
        let etag = header(&a.headers, "etag").ok_or_else(|| Error::Answer {
            op: "UploadPart",
            key: key.to_owned(),
            message: "no ETag".into(),
        })?;
        Ok(Part {
            number,
            etag,
            sha256,
        })
    }

    /// Complete a multipart upload; the object's ETag.
    pub async fn complete(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[Part],
    ) -> Result<String, Error> {
        let mut xml = String::from("<CompleteMultipartUpload>");
        for p in parts {
            xml.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag>",
                p.number,
                xml_escape(&p.etag)
            ));
            if let Some(s) = &p.sha256 {
                xml.push_str(&format!("<ChecksumSHA256>{s}</ChecksumSHA256>"));
            }
            xml.push_str("</Part>");
        }
        xml.push_str("</CompleteMultipartUpload>");
        let etags: Vec<&str> = parts.iter().map(|p| p.etag.as_str()).collect();
        let a = self
            .send(
                "CompleteMultipartUpload",
                key,
                reqwest::Method::POST,
                &|| {
                    self.signed(
                        self.bucket.complete_multipart_upload(
                            Some(&self.creds),
                            key,
                            upload_id,
                            etags.iter().copied(),
                        ),
                        &[],
                        &[],
                    )
                },
                bytes::Bytes::from(xml.clone()),
            )
            .await?;
        // A 200 may still carry an error (S3 sends it while it works).
        let text = String::from_utf8_lossy(&a.body);
        if let Some(code) = xml_field(&text, "Code") {
            return Err(Error::Status {
                op: "CompleteMultipartUpload",
                key: key.to_owned(),
                status: a.status,
                code,
                message: xml_field(&text, "Message").unwrap_or_default(),
            });
        }
        Ok(xml_field(&text, "ETag")
            .map(|e| e.replace("&quot;", "\""))
            .unwrap_or_default())
    }

    /// Abort a multipart upload (its parts are dropped; no object appears).
    pub async fn abort(&self, key: &str, upload_id: &str) -> Result<(), Error> {
        self.send(
            "AbortMultipartUpload",
            key,
            reqwest::Method::DELETE,
            &|| {
                self.signed(
                    self.bucket
                        .abort_multipart_upload(Some(&self.creds), key, upload_id),
                    &[],
                    &[],
                )
            },
            bytes::Bytes::new(),
        )
        .await
        .map(drop)
    }
}
