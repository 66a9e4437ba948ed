// Element-like Matrix client for Patchwork's end-to-end encryption interop test.
//
// It uses matrix-js-sdk's Rust crypto (Element's crypto stack) in "exclude insecure devices" mode
// (OnlySignedDevicesIsolationMode, MSC4153), cross-signs its own device, joins a room it has been
// invited to, sends a command there, waits for the bot's encrypted m.notice reply and decrypts it.
// It prints exactly one JSON line on stdout ({"ok": true, ...} or {"ok": false, "error": ...}),
// sends every log line to stderr, and exits by itself: 0 on success, 1 on failure, 2 on timeout.
//
// Usage: node client.mjs config.json   (or PATCHWORK_INTEROP_CONFIG=config.json node client.mjs)
// Config keys: homeserver, user_id, password, room_id, bot_user_id, text (default "!help"),
// timeout_seconds (default 60), isolation ("only_signed" (default) or "all"),
// require_in_reply_to (default false: the first notice from the bot after the send counts),
// failure_grace_seconds (default 3: how long a final-looking decryption failure may still heal),
// wait_for_mention (default false: after the reply, also wait for an m.text from the bot that
// mentions this user). For every bot message that mentions this user, the result lists its
// msgtype and what this client's push rules decide for it (getPushActionsForEvent, as Element
// decides whether to notify: in an encrypted room the server cannot). Polls the bot starts
// (org.matrix.msc3381.poll.start) are listed in "polls" with the same push decision, and their
// answers; wait_for_poll (default false) also waits, after the mention, for the poll asking
// this user to decrypt.
// verify_bot (default false): after the reply, ask to verify the bot as Element's "Verify User"
// does (requestVerificationDM in room_id) and report how the request ended ("verification").

import { readFileSync } from "node:fs";
import { format } from "node:util";

// Node 20 lacks Promise.withResolvers, which matrix-js-sdk 43 uses inside its sync loop: without
// it the loop dies quietly after a login that looks successful.
if (typeof Promise.withResolvers !== "function") {
    Promise.withResolvers = function withResolvers() {
        let resolve;
        let reject;
        const promise = new this((res, rej) => {
            resolve = res;
            reject = rej;
        });
        return { promise, resolve, reject };
    };
}

// stdout carries exactly one JSON line; library logs go to stderr. matrix-js-sdk sets every child
// logger to DEBUG, so the level is applied here: INTEROP_LOG_LEVEL=debug|info|warn (default warn).
const LEVELS = { debug: 0, info: 1, warn: 2, error: 3 };
const threshold = LEVELS[process.env.INTEROP_LOG_LEVEL ?? "warn"] ?? LEVELS.warn;
const toStderr =
    (level) =>
    (...args) => {
        if (LEVELS[level] >= threshold) process.stderr.write(`${format(...args)}\n`);
    };
console.trace = toStderr("debug");
console.debug = toStderr("debug");
console.log = toStderr("info");
console.info = toStderr("info");
console.warn = toStderr("warn");
console.error = toStderr("error");

const started = Date.now();
const timings = {};
const mark = (name) => {
    timings[name] = Date.now() - started;
};

let client = null;
let finished = false;

function finish(result, code) {
    if (finished) return;
    finished = true;
    try {
        client?.stopClient();
    } catch {
        // Stopping is best effort: the process exits next anyway.
    }
    process.stdout.write(`${JSON.stringify({ ...result, timings_ms: timings })}\n`, () =>
        process.exit(code),
    );
}

function fail(error, code = 1) {
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    finish({ ok: false, error: message }, code);
}

process.on("unhandledRejection", (reason) => fail(reason));
process.on("uncaughtException", (error) => fail(error));

function loadConfig() {
    const path = process.argv[2] ?? process.env.PATCHWORK_INTEROP_CONFIG;
    if (!path) throw new Error("usage: node client.mjs <config.json> (or PATCHWORK_INTEROP_CONFIG)");
    const config = JSON.parse(readFileSync(path, "utf8"));
    for (const key of ["homeserver", "user_id", "password", "room_id", "bot_user_id"]) {
        if (typeof config[key] !== "string" || !config[key]) throw new Error(`config lacks "${key}"`);
    }
    return {
        text: "!help",
        timeout_seconds: 60,
        isolation: "only_signed",
        require_in_reply_to: false,
        failure_grace_seconds: 3,
        wait_for_mention: false,
        verify_bot: false,
        wait_for_poll: false,
        ...config,
    };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(what, predicate, intervalMs = 100) {
    for (;;) {
        if (finished) throw new Error(`stopped while waiting for ${what}`);
        if (await predicate()) return;
        await sleep(intervalMs);
    }
}

async function main() {
    const config = loadConfig();
    setTimeout(
        () => fail(new Error(`timed out after ${config.timeout_seconds}s (${lastStep})`), 2),
        config.timeout_seconds * 1000,
    ).unref();

    const sdk = await import("matrix-js-sdk");
    const cryptoApi = await import("matrix-js-sdk/lib/crypto-api/index.js");

    step("login");
    const login = await sdk.createClient({ baseUrl: config.homeserver }).loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: config.user_id },
        password: config.password,
        initial_device_display_name: "Patchwork interop (matrix-js-sdk)",
    });
    mark("logged_in");
    client = sdk.createClient({
        baseUrl: config.homeserver,
        userId: login.user_id,
        deviceId: login.device_id,
        accessToken: login.access_token,
    });
    // A plain initRustCrypto() wants IndexedDB and aborts node with an uncatchable WASM panic.
    await client.initRustCrypto({ useIndexedDB: false });
    const crypto = client.getCrypto();
    crypto.setDeviceIsolationMode(
        config.isolation === "all"
            ? new cryptoApi.AllDevicesIsolationMode(false)
            : new cryptoApi.OnlySignedDevicesIsolationMode(),
    );

    step("first sync");
    const prepared = new Promise((resolve, reject) => {
        client.on(sdk.ClientEvent.Sync, (state, _prev, data) => {
            if (state === sdk.SyncState.Prepared || state === sdk.SyncState.Syncing) resolve();
            if (state === sdk.SyncState.Error) reject(data?.error ?? new Error("sync failed"));
        });
    });
    await client.startClient({ initialSyncLimit: 20 });
    await prepared;
    mark("first_sync");

    step("cross-signing own device");
    await crypto.bootstrapCrossSigning({
        authUploadDeviceSigningKeys: async (makeRequest) => {
            const auth = {
                type: "m.login.password",
                identifier: { type: "m.id.user", user: config.user_id },
                password: config.password,
            };
            try {
                return await makeRequest(null);
            } catch (error) {
                const session = error?.data?.session;
                if (error?.httpStatus !== 401 || !session) throw error;
                return await makeRequest({ ...auth, session });
            }
        },
    });
    await waitFor("own device to be cross-signed", async () => {
        const status = await crypto.getDeviceVerificationStatus(login.user_id, login.device_id);
        return Boolean(status?.signedByOwner) && (await crypto.isCrossSigningReady());
    });
    mark("cross_signed");

    step("joining the room");
    await client.joinRoom(config.room_id);
    await waitFor("the room to be joined and known as encrypted", async () => {
        const room = client.getRoom(config.room_id);
        return room?.getMyMembership() === "join" && crypto.isEncryptionEnabledInRoom(config.room_id);
    });
    mark("joined");

    step("learning the bot's devices");
    let botDevices = new Map();
    await waitFor("the bot's device keys", async () => {
        const devices = await crypto.getUserDeviceInfo([config.bot_user_id], true);
        botDevices = devices.get(config.bot_user_id) ?? new Map();
        return botDevices.size > 0;
    });
    mark("bot_devices_known");
    const botDeviceStatus = {};
    for (const deviceId of botDevices.keys()) {
        const status = await crypto.getDeviceVerificationStatus(config.bot_user_id, deviceId);
        botDeviceStatus[deviceId] = { signed_by_owner: Boolean(status?.signedByOwner) };
    }

    step("waiting for the bot's reply");
    let sentEventId = null;
    let sending = false;
    let lastFailure = null;
    let failureTimer = null;
    const reply = Promise.withResolvers();
    const mentionText = Promise.withResolvers();
    const mentions = [];
    const polls = [];
    const pushOf = (event) => {
        const actions = client.getPushActionsForEvent(event, true);
        return { notify: Boolean(actions?.notify), highlight: Boolean(actions?.tweaks?.highlight) };
    };

    const consider = async (event) => {
        if (!sending || event.getRoomId() !== config.room_id) return;
        if (event.getSender() !== config.bot_user_id) return;
        await client.decryptEventIfNeeded(event);
        if (event.isDecryptionFailure()) {
            lastFailure = {
                event_id: event.getId(),
                reason: event.decryptionFailureReason,
                message: event.getContent()?.body,
            };
            // A missing room key may still arrive; other failures are given a short grace.
            failureTimer ??= setTimeout(
                () => reply.reject(new Error(`cannot decrypt the bot's reply: ${JSON.stringify(lastFailure)}`)),
                config.failure_grace_seconds * 1000,
            );
            return;
        }
        if (event.getType() === "org.matrix.msc3381.poll.start") {
            if (polls.every((seen) => seen.event_id !== event.getId())) {
                const start = event.getContent()?.["org.matrix.msc3381.poll.start"] ?? {};
                polls.push({
                    event_id: event.getId(),
                    question: start.question?.["org.matrix.msc1767.text"] ?? null,
                    answers: (start.answers ?? []).map((answer) => answer["org.matrix.msc1767.text"]),
                    ...pushOf(event),
                });
            }
            return;
        }
        if (event.getType() !== "m.room.message") return;
        const content = event.getContent();
        if ((content?.["m.mentions"]?.user_ids ?? []).includes(login.user_id)) {
            if (mentions.every((seen) => seen.event_id !== event.getId())) {
                const entry = {
                    event_id: event.getId(),
                    msgtype: content?.msgtype ?? null,
                    body: String(content?.body ?? "").slice(0, 80),
                    ...pushOf(event),
                };
                mentions.push(entry);
                if (entry.msgtype === "m.text") mentionText.resolve(entry);
            }
        }
        const inReplyTo = content?.["m.relates_to"]?.["m.in_reply_to"]?.event_id ?? null;
        if (config.require_in_reply_to && (!sentEventId || inReplyTo !== sentEventId)) return;
        if (failureTimer) clearTimeout(failureTimer);
        reply.resolve({ event, content, inReplyTo });
    };
    const onEvent = (event) => {
        consider(event).catch((error) => reply.reject(error));
    };
    client.on(sdk.RoomEvent.Timeline, (event, _room, toStartOfTimeline) => {
        if (!toStartOfTimeline) onEvent(event);
    });
    client.on(sdk.MatrixEventEvent.Decrypted, onEvent);

    step("sending the command");
    sending = true;
    const sent = await client.sendMessage(config.room_id, { msgtype: "m.text", body: config.text });
    sentEventId = sent.event_id;
    mark("sent");

    step("waiting for the bot's reply");
    const { event, content, inReplyTo } = await reply.promise;
    mark("reply_decrypted");
    const replyPush = pushOf(event);
    if (config.wait_for_mention) {
        step("waiting for a message that mentions me");
        await mentionText.promise;
        mark("mention_decrypted");
    }
    if (config.wait_for_poll) {
        step("waiting for a poll from the bot");
        // The poll that asks this user names them (by their display name, here the localpart).
        const localpart = login.user_id.slice(1).split(":")[0];
        await waitFor("a poll that asks me", async () =>
            polls.some((poll) => String(poll.question).includes(localpart)),
        );
        mark("poll_decrypted");
    }

    let verification = null;
    if (config.verify_bot) {
        step("asking to verify the bot");
        const begun = Date.now();
        const request = await crypto.requestVerificationDM(config.bot_user_id, config.room_id);
        const { Cancelled, Done, Ready, Started } = cryptoApi.VerificationPhase;
        await waitFor("the verification request to be answered", async () =>
            [Cancelled, Done, Ready, Started].includes(request.phase),
        );
        const answeredMs = Date.now() - begun;
        step("waiting for the bot's explanation");
        let explanation = null;
        await waitFor("the bot's explanation", async () => {
            const events = client.getRoom(config.room_id)?.getLiveTimeline().getEvents() ?? [];
            for (const seen of events) {
                await client.decryptEventIfNeeded(seen);
                const body = seen.getContent()?.body ?? "";
                if (seen.getSender() === config.bot_user_id && body.includes("verification")) {
                    explanation = { msgtype: seen.getContent()?.msgtype ?? null, body };
                    return true;
                }
            }
            return false;
        });
        verification = {
            phase: cryptoApi.VerificationPhase[request.phase],
            cancellation_code: request.cancellationCode ?? null,
            cancelled_by: request.cancellingUserId ?? null,
            answered_ms: answeredMs,
            explanation,
        };
    }

    const senderDeviceId = event.getWireContent()?.device_id ?? null;
    let verifiedByOwner = null;
    if (senderDeviceId) {
        const status = await crypto.getDeviceVerificationStatus(config.bot_user_id, senderDeviceId);
        verifiedByOwner = status ? Boolean(status.signedByOwner) : null;
    }
    const shield = await crypto.getEncryptionInfoForEvent(event);
    finish(
        {
            ok: true,
            sent_event_id: sentEventId,
            reply_event_id: event.getId(),
            reply_body: content?.body ?? null,
            reply_formatted_body: content?.formatted_body ?? null,
            reply_format: content?.format ?? null,
            reply_msgtype: content?.msgtype ?? null,
            reply_in_reply_to: inReplyTo,
            reply_push: replyPush,
            mentions,
            polls,
            verification,
            reply_sender_device_id: senderDeviceId,
            reply_sender_device_verified_by_owner: verifiedByOwner,
            reply_shield: shield
                ? {
                      colour: cryptoApi.EventShieldColour[shield.shieldColour] ?? shield.shieldColour,
                      reason:
                          shield.shieldReason === null
                              ? null
                              : (cryptoApi.EventShieldReason[shield.shieldReason] ?? shield.shieldReason),
                  }
                : null,
            bot_devices: botDeviceStatus,
            isolation: config.isolation,
            device_id: login.device_id,
        },
        0,
    );
}

let lastStep = "starting";
function step(name) {
    lastStep = name;
}

main().catch((error) => fail(error));
