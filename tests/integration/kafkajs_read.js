// Reads a topic from the beginning with kafkajs and prints each record as a JSON line.
// node kafkajs_read.js BOOTSTRAP_SERVERS TOPIC COUNT TIMEOUT_MS
// Exit 0 after COUNT records; on a consumer crash (e.g. "LZ4 compression not implemented")
// one {"crash": message} line and exit 3; exit 2 at the deadline. kafkajs comes from NODE_PATH.
"use strict";
const { Kafka, logLevel } = require("kafkajs");

const [brokers, topic, count, timeoutMs] = process.argv.slice(2);
const wanted = Number(count);
const print = (line) => process.stdout.write(JSON.stringify(line) + "\n");
const timer = setTimeout(() => process.exit(2), Number(timeoutMs));

async function main() {
  const kafka = new Kafka({
    clientId: "etastream-kafkajs-test",
    brokers: brokers.split(","),
    logLevel: logLevel.NOTHING,
  });
  // Tansu holds a new member's JoinGroup for the whole rebalance timeout (kafkajs: 60 s)
  const consumer = kafka.consumer({
    groupId: `kafkajs-${topic}-${Date.now()}`,
    rebalanceTimeout: 3000,
    sessionTimeout: 6000,
  });
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    print({ crash: String(payload.error && payload.error.message) });
    process.exit(3);
  });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let got = 0;
  await consumer.run({
    eachMessage: async ({ message }) => {
      print({ key: message.key && message.key.toString(), value: message.value.toString() });
      got += 1;
      // no consumer.disconnect(): it waits for this handler to return, and the group (of
      // this reader alone) expires on the broker
      if (got >= wanted) process.exit(0);
    },
  });
}

main().catch((error) => {
  print({ crash: String(error && error.message) });
  process.exit(3);
});
