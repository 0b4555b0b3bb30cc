#!/usr/bin/env node
// cosmosdb-server (npm @vercel/cosmosdb-server) with its data kept on disk, so that the local stack's
// Cosmos survives a restart as Azure's does (`python -m devhost up --keep-data`).
//
//   node devhost/cosmos_server.js --host 127.0.0.1 --port 8081 [--data .devhost/cosmos/journal.jsonl]
//
// cosmosdb-server keeps everything in memory and has no persistence of its own. Every change to its
// store goes through two methods of its `Items` class (`_set` for create, replace, upsert, patch and
// batch; `delete`), so those are wrapped: each change is appended to a journal (one JSON line, written
// synchronously before the request is answered, so an acknowledged write survives the process being
// killed; not an OS crash, there is no fsync). On start the journal is replayed with the documents as
// they were (`_rid`, `_etag`, `_ts` kept, so ETag preconditions still hold), then compacted: rewritten
// as one line per live resource. A torn last line (a kill in the middle of a write) is dropped.
// Without --data it keeps everything in memory, as cosmosdb-server alone does.
//
// It also answers a point read of a document that does not exist as Cosmos DB does, 404 NotFound:
// cosmosdb-server 1.0.1 throws a TypeError there (500), which the Cosmos SDK retries with back-off for
// about a second before giving up, on every miss (an unknown machine's 404, a read before a create).
"use strict";

const fs = require("fs");
const path = require("path");

const PKG = "@vercel/cosmosdb-server";
// Patched before the server's routes are loaded: they keep the handler they find at load time.
const readDocument = require(`${PKG}/lib/handler/read-document`);
const partitions = require(`${PKG}/lib/utils/get-partition-from-header`);
const originalReadDocument = readDocument.default;
readDocument.default = function readDocumentOr404(account, req, res, params) {
  const collection = account.database(params.dbId).collection(params.collId);
  if (collection.read()) {
    const key = partitions.parsePartitionKey(partitions.default(req), params.docId);
    if (!collection.document(params.docId, key).read()) {
      res.statusCode = 404;
      return { code: "NotFound", message: "Entity with the specified id does not exist in the system." };
    }
  }
  return originalReadDocument(account, req, res, params);
};
// cosmosdb-server 1.0.1 lower-cases a patch's filter predicate ("FROM c WHERE ...") before evaluating
// it, field names and string literals included: `c.applianceId` becomes `c.applianceid`, which is never
// defined, so a condition on any camelCase field or mixed-case value answers wrongly (a guard written
// `NOT IS_DEFINED(x) OR x < n` always passes). Cosmos DB evaluates the predicate as written. The
// emulator takes a whole query verbatim, so it is given the query it would build, with the case kept.
const patchOperations = require(`${PKG}/lib/handler/_patch-operations`);
const originalPatchOperation = patchOperations.patchOperation;
patchOperations.patchOperation = function patchOperationAsWritten(collection, input) {
  const predicate = typeof input.condition === "string" && /^\s*from\s+c\s+where\s+([\s\S]*)$/i.exec(input.condition);
  if (predicate) {
    input = { ...input, condition: `SELECT * FROM c WHERE c.id = @id AND (${predicate[1]})` };
  }
  return originalPatchOperation(collection, input);
};
const server = require(PKG);
const Items = require(`${PKG}/lib/account/items`).default;
const accountModule = require(`${PKG}/lib/account`);

const KINDS = {
  Databases: "dbs",
  Collections: "colls",
  Documents: "docs",
  UserDefinedFunctions: "udfs"
};

function parseArgs(argv) {
  const args = { host: "127.0.0.1", port: 8081, data: null, nossl: false };
  while (argv.length) {
    const key = argv.shift();
    if (key === "--host") args.host = argv.shift();
    else if (key === "--port" || key === "-p") args.port = parseInt(argv.shift(), 10);
    else if (key === "--data") args.data = argv.shift();
    else if (key === "--no-ssl") args.nossl = true;
    else throw new Error(`unknown argument ${key}`);
  }
  return args;
}

const args = parseArgs(process.argv.slice(2));
// Where each container sits: [] for the databases, [db] for collections, [db, coll] for documents.
const paths = new WeakMap();
let journal = null; // the file descriptor; null while replaying (a replayed change is not re-journaled)

function record(entry) {
  if (journal !== null) fs.writeSync(journal, `${JSON.stringify(entry)}\n`);
}

const originalSet = Items.prototype._set;
const originalDelete = Items.prototype.delete;

Items.prototype._set = function set(data) {
  const result = originalSet.call(this, data);
  const kind = KINDS[this.constructor.name];
  if (kind === undefined) return result; // partition key ranges: made again with their collection
  const item = this._data.get(data._rid);
  const here = paths.get(this) || [];
  if (kind === "dbs") paths.set(item.collections, [data.id]);
  if (kind === "colls") {
    paths.set(item.documents, [...here, data.id]);
    paths.set(item.userDefinedFunctions, [...here, data.id]);
  }
  record({ op: "set", kind, path: here, n: this._ridCount, data });
  return result;
};

Items.prototype.delete = function del(idOrRid, partition) {
  const existing = this._item("/id", idOrRid, partition).read();
  originalDelete.call(this, idOrRid, partition);
  const kind = KINDS[this.constructor.name];
  if (kind !== undefined && existing) {
    record({ op: "del", kind, path: paths.get(this) || [], rid: existing._rid });
  }
};

function containerOf(account, kind, where) {
  if (kind === "dbs") return account.databases;
  const database = account.database(where[0]);
  if (kind === "colls") return database.collections;
  const collection = database.collection(where[1]);
  return kind === "docs" ? collection.documents : collection.userDefinedFunctions;
}

function replay(account, file) {
  if (!fs.existsSync(file)) return 0;
  const lines = fs.readFileSync(file, "utf8").split("\n");
  let applied = 0;
  for (let i = 0; i < lines.length; i += 1) {
    if (!lines[i]) continue;
    let entry;
    try {
      entry = JSON.parse(lines[i]);
    } catch (err) {
      // eslint-disable-next-line no-console
      console.error(`journal line ${i + 1} is torn (a kill mid-write?): ignored, with what follows`);
      break;
    }
    const items = containerOf(account, entry.kind, entry.path);
    if (entry.op === "set") {
      items._set(entry.data);
      items._ridCount = Math.max(items._ridCount, entry.n || 0);
    } else if (items._data.has(entry.rid)) {
      items.delete(entry.rid, undefined);
    }
    applied += 1;
  }
  return applied;
}

function compact(account, file) {
  const out = [];
  const dump = (items, kind, where) => {
    for (const item of items._data.values()) {
      out.push(JSON.stringify({ op: "set", kind, path: where, n: items._ridCount, data: item.read() }));
    }
  };
  dump(account.databases, "dbs", []);
  for (const database of account.databases._data.values()) {
    const db = database.read().id;
    dump(database.collections, "colls", [db]);
    for (const collection of database.collections._data.values()) {
      const coll = collection.read().id;
      dump(collection.documents, "docs", [db, coll]);
      dump(collection.userDefinedFunctions, "udfs", [db, coll]);
    }
  }
  const partial = `${file}.partial`;
  const fd = fs.openSync(partial, "w", 0o600);
  fs.writeSync(fd, out.map(line => `${line}\n`).join(""));
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  fs.renameSync(partial, file);
  return out.length;
}

const BaseAccount = accountModule.default;
class PersistentAccount extends BaseAccount {
  constructor(host, port) {
    super(host, port);
    paths.set(this.databases, []);
    if (!args.data) return; // in memory only
    const applied = replay(this, args.data);
    const kept = compact(this, args.data);
    journal = fs.openSync(args.data, "a", 0o600);
    // eslint-disable-next-line no-console
    console.log(`journal ${args.data}: ${applied} changes replayed, ${kept} resources kept`);
  }
}
// index.js reads `account.default` when the server starts listening: it makes ours.
accountModule.default = PersistentAccount;

if (args.data) fs.mkdirSync(path.dirname(path.resolve(args.data)), { recursive: true, mode: 0o700 });
const create = args.nossl ? server.createHttpServer : server.createHttpsServer;
// cosmosdb-server answers "connection: close" unless asked for keep-alive: every SDK call then opened a new
// TLS connection, and the Functions host spent most of its CPU in handshakes and loading CA bundles (the
// fleet benchmark's first profile). Cosmos in Azure keeps connections open; so does the emulator now. The
// idle timeout is above the SDK pool's reuse of a quiet connection, so a request rarely races a close.
const listening = create({ keepAlive: true });
listening.keepAliveTimeout = 65000;
listening.headersTimeout = 66000;
listening.listen(args.port, args.host, () => {
  // eslint-disable-next-line no-console
  console.log(`Ready to accept HTTP${args.nossl ? "" : "S"} connections at ${args.host}:${args.port}`);
});
