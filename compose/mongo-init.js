// solewatch's MongoDB account (compose/compose.yml mounts this file into
// /docker-entrypoint-initdb.d/).
//
// The mongo image runs it once, on the first start with an empty data volume,
// with mongosh, as the root user, against a temporary standalone server (before
// the replica set exists). Later starts skip it: to change the password
// afterwards, use db.changeUserPassword() in `docker compose exec mongodb mongosh`.
//
// The account may read and write solewatch's database and nothing else; the
// collections and indexes are made by `solewatch migrate`, which readWrite
// allows. The connection URL names this database as its authSource.

const user = process.env.MONGO_APP_USER || "solewatch";
const password = process.env.MONGO_APP_PASSWORD;
if (!password) {
  throw new Error("MONGO_APP_PASSWORD is not set");
}

const solewatch = db.getSiblingDB("solewatch");
if (solewatch.getUser(user) === null) {
  solewatch.createUser({ user: user, pwd: password, roles: [{ role: "readWrite", db: "solewatch" }] });
  print(`mongo-init.js: created user ${user} on database solewatch`);
}
