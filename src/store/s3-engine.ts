/**
 * The S3 engine: a store under a prefix of a bucket of any S3-compatible
 * service (AWS, Ceph's RADOS Gateway, MinIO). The endpoint and credentials
 * come from the options or from the usual AWS environment variables
 * (AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, profiles). A PutObject is atomic, as the store
 * needs. With an endpoint of its own (not AWS) requests use path-style URLs
 * and send checksums only where required: Ceph Pacific refuses the SDK's
 * default aws-chunked uploads (HTTP 411).
 */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import type { StoredObject, StoreEngine } from './engine.js';
import { StoreError } from './errors.js';

export interface S3EngineOptions {
  /** e.g. http://127.0.0.1:7480; default AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS itself. */
  readonly endpoint?: string;
  /** Default AWS_REGION, AWS_DEFAULT_REGION, else us-east-1. */
  readonly region?: string;
  readonly accessKeyId?: string;
  readonly secretAccessKey?: string;
  /** Concurrent connections (default 32). */
  readonly maxSockets?: number;
}

function isNotFound(error: unknown): boolean {
  if (!(error instanceof S3ServiceException)) return false;
  return error.$metadata?.httpStatusCode === 404 || error.name === 'NoSuchKey' || error.name === 'NotFound';
}

export class S3Engine implements StoreEngine {
  readonly description: string;
  private readonly client: S3Client;

  constructor(
    readonly bucket: string,
    /** '' or ending in '/'. */
    readonly prefix: string,
    options: S3EngineOptions = {},
  ) {
    this.description = `s3://${bucket}/${prefix}`;
    const env = process.env;
    const endpoint = options.endpoint ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
    const credentials =
      options.accessKeyId && options.secretAccessKey
        ? { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey }
        : undefined;
    this.client = new S3Client({
      region: options.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1',
      ...(endpoint ? { endpoint, forcePathStyle: true } : {}),
      ...(credentials ? { credentials } : {}),
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 3,
    });
  }

  private failed(what: string, key: string, error: unknown): StoreError {
    const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    return new StoreError('store-io-failed', `${this.description}: ${what} ${key} failed (${detail})`, { cause: error });
  }

  async get(key: string): Promise<Uint8Array | null> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }));
      return await out.Body!.transformToByteArray();
    } catch (error) {
      if (isNotFound(error)) return null;
      throw this.failed('GET', key, error);
    }
  }

  async size(key: string): Promise<number | null> {
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }));
      return out.ContentLength ?? 0;
    } catch (error) {
      if (isNotFound(error)) return null;
      throw this.failed('HEAD', key, error);
    }
  }

  async put(key: string, bytes: Uint8Array): Promise<void> {
    try {
      await this.client.send(
        new PutObjectCommand({ Bucket: this.bucket, Key: this.prefix + key, Body: bytes, ContentLength: bytes.length }),
      );
    } catch (error) {
      throw this.failed('PUT', key, error);
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }));
    } catch (error) {
      if (!isNotFound(error)) throw this.failed('DELETE', key, error);
    }
  }

  async *list(prefix: string): AsyncIterable<StoredObject> {
    let token: string | undefined;
    do {
      let out: import('@aws-sdk/client-s3').ListObjectsV2CommandOutput;
      try {
        out = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix + prefix, ContinuationToken: token }),
        );
      } catch (error) {
        throw this.failed('LIST', prefix, error);
      }
      for (const item of out.Contents ?? []) {
        if (item.Key) yield { key: item.Key.slice(this.prefix.length), size: item.Size ?? 0 };
      }
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
  }

  close(): void {
    this.client.destroy();
  }
}
