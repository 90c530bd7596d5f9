'use strict';

// Benchmark peer: a sharp (libvips) server that speaks the ImgFlux /process
// contract for the options the benchmark uses (w, h, format png|jpeg, q).
// It keeps sharp's defaults except where the contract needs otherwise, so it
// measures what a plain production sharp deployment does.

const http = require('node:http');
const busboy = require('busboy');
const sharp = require('sharp');

const HOST = process.env.HOST || '127.0.0.1';
const PORT = Number(process.env.PORT || 3001);
const API_KEYS = new Set(
  (process.env.API_KEYS || 'rust_is_fast_123,demo_user_007')
    .split(',')
    .map((key) => key.trim())
    .filter((key) => key.length > 0),
);
const MAX_BODY_BYTES = 10 * 1024 * 1024;
const MAX_SIDE = 8192;
const MAX_INPUT_PIXELS = 50000000;
const ALLOWED_PARAMS = new Set(['w', 'h', 'format', 'q']);
const CONTENT_TYPES = { png: 'image/png', jpeg: 'image/jpeg' };

class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
  });
  res.end(text);
}

function sendError(res, error) {
  sendJson(res, error.status, {
    error: { status: error.status, code: error.code, message: error.message },
  });
}

function parseSide(name, text) {
  if (text === null) return undefined;
  const value = /^[0-9]+$/.test(text) ? Number(text) : NaN;
  if (!(value >= 1 && value <= MAX_SIDE)) {
    throw new HttpError(400, 'invalid_parameter',
      `invalid ${name}: '${text}' is not an integer from 1 to ${MAX_SIDE}`);
  }
  return value;
}

// Parses the query into resize and encode options, rejecting unknown and
// repeated parameters as ImgFlux does.
function parseOptions(searchParams) {
  const seen = new Set();
  for (const name of searchParams.keys()) {
    if (!ALLOWED_PARAMS.has(name)) {
      throw new HttpError(400, 'invalid_parameter',
        `unknown parameter '${name}': this peer supports w, h, format and q`);
    }
    if (seen.has(name)) {
      throw new HttpError(400, 'invalid_parameter', `parameter '${name}' is repeated`);
    }
    seen.add(name);
  }

  const width = parseSide('w', searchParams.get('w'));
  const height = parseSide('h', searchParams.get('h'));

  let format = (searchParams.get('format') || 'png').toLowerCase();
  if (format === 'jpg') format = 'jpeg';
  if (!(format in CONTENT_TYPES)) {
    throw new HttpError(400, 'invalid_parameter',
      `invalid format: '${format}' is not png or jpeg`);
  }

  const qualityText = searchParams.get('q') ?? '80';
  const quality = /^[0-9]+$/.test(qualityText) ? Number(qualityText) : NaN;
  if (!(quality >= 1 && quality <= 100)) {
    throw new HttpError(400, 'invalid_parameter',
      `invalid q: '${qualityText}' is not an integer from 1 to 100`);
  }

  return { width, height, format, quality };
}

// Reads the multipart field `image` into one buffer, enforcing the body limit.
function readImageField(req) {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (declared > MAX_BODY_BYTES) {
      reject(new HttpError(413, 'body_too_large', `body exceeds ${MAX_BODY_BYTES} bytes`));
      req.resume();
      return;
    }

    let parser;
    try {
      parser = busboy({ headers: req.headers, limits: { files: 1, fileSize: MAX_BODY_BYTES } });
    } catch (error) {
      reject(new HttpError(415, 'unsupported_media_type',
        `expected multipart/form-data with a boundary: ${error.message}`));
      req.resume();
      return;
    }

    let image = null;
    parser.on('file', (name, stream) => {
      if (name !== 'image') {
        stream.resume();
        return;
      }
      const chunks = [];
      stream.on('data', (chunk) => chunks.push(chunk));
      stream.on('limit', () => reject(
        new HttpError(413, 'body_too_large', `image exceeds ${MAX_BODY_BYTES} bytes`)));
      stream.on('end', () => { image = Buffer.concat(chunks); });
    });
    parser.on('error', (error) => reject(
      new HttpError(400, 'malformed_multipart', `malformed multipart body: ${error.message}`)));
    parser.on('close', () => {
      if (image === null || image.length === 0) {
        reject(new HttpError(400, 'missing_image', "multipart field 'image' is missing or empty"));
      } else {
        resolve(image);
      }
    });
    req.pipe(parser);
  });
}

async function transform(image, options) {
  // autoOrient applies the EXIF Orientation tag. fit 'inside' keeps the aspect
  // ratio and, like ImgFlux's default enlarge=true, may scale up.
  let pipeline = sharp(image, { autoOrient: true, limitInputPixels: MAX_INPUT_PIXELS })
    .resize({ width: options.width, height: options.height, fit: 'inside' });
  if (options.format === 'jpeg') {
    pipeline = pipeline.flatten({ background: '#ffffff' }).jpeg({ quality: options.quality });
  } else {
    pipeline = pipeline.png();
  }
  try {
    return await pipeline.toBuffer();
  } catch (error) {
    throw new HttpError(422, 'undecodable_image', `image could not be processed: ${error.message}`);
  }
}

async function handleProcess(req, res, url) {
  const key = req.headers['x-api-key'];
  if (typeof key !== 'string' || !API_KEYS.has(key)) {
    req.resume();
    throw new HttpError(401, 'unauthorized', 'missing or invalid x-api-key header');
  }
  let options;
  try {
    options = parseOptions(url.searchParams);
  } catch (error) {
    req.resume();
    throw error;
  }
  const image = await readImageField(req);
  const output = await transform(image, options);
  res.writeHead(200, {
    'Content-Type': CONTENT_TYPES[options.format],
    'Content-Length': output.length,
  });
  res.end(output);
}

async function route(req, res) {
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname === '/health' && req.method === 'GET') {
    sendJson(res, 200, { status: 'ok' });
    return;
  }
  if (url.pathname === '/process') {
    if (req.method !== 'POST') {
      res.setHeader('Allow', 'POST');
      throw new HttpError(405, 'method_not_allowed', `method ${req.method} is not allowed on /process`);
    }
    await handleProcess(req, res, url);
    return;
  }
  throw new HttpError(404, 'not_found', `no route for ${url.pathname}`);
}

const server = http.createServer((req, res) => {
  route(req, res).catch((error) => {
    if (!(error instanceof HttpError)) {
      console.error(`request ${req.method} ${req.url} failed:`, error);
      error = new HttpError(500, 'internal_error', 'internal error');
    }
    if (!res.headersSent) sendError(res, error);
  });
});

server.listen(PORT, HOST, () => {
  console.log(`sharp peer listening on http://${HOST}:${PORT} ` +
    `(sharp ${sharp.versions.sharp}, libvips ${sharp.versions.vips}, ` +
    `concurrency ${sharp.concurrency()}, UV_THREADPOOL_SIZE ${process.env.UV_THREADPOOL_SIZE || 4})`);
});

function shutDown(signal) {
  console.log(`sharp peer received ${signal}, closing`);
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutDown('SIGTERM'));
process.on('SIGINT', () => shutDown('SIGINT'));
