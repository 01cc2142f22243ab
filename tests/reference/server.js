// The Node reference server (open-easyrtc 2.1.8 on express + socket.io 4), for differential tests
// and benchmarks. Settings follow open-easyrtc's server_example.
//
//   node tests/reference/server.js PORT [EASYRTC_OPTIONS_JSON]
//
// Env DEMOS_DIR: a folder served at /demos/ instead of the package's own demos.
// Prints "listening PORT" on stdout once it accepts connections (port 0: one the system picks).
"use strict";
const http = require("http");
const express = require("express");
const socketIo = require("socket.io");
const easyrtc = require("open-easyrtc");

const port = Number(process.argv[2] || 8080);
const options = Object.assign(
  { logLevel: process.env.EASYRTC_LOG_LEVEL || "error" },
  JSON.parse(process.argv[3] || "{}"),
);

const app = express();
if (process.env.DEMOS_DIR) {
  options.demosEnable = false;
  app.use("/demos", express.static(process.env.DEMOS_DIR, { index: ["index.html"] }));
  app.get("/", (req, res) => res.redirect("/demos/"));
}
const webServer = http.createServer(app);
const socketServer = socketIo(webServer, {
  allowEIO3: true,
  cookie: false,
  cors: { origin: "*" },
  pingInterval: 5000,
  pingTimeout: 10000,
  upgradeTimeout: 3000,
  maxHttpBufferSize: 1e6,
});

easyrtc.listen(app, socketServer, options, (err) => {
  if (err) {
    console.error(err);
    process.exit(1);
  }
  webServer.listen(port, "127.0.0.1", () => console.log(`listening ${webServer.address().port}`));
});
