/*
 * Offline stand-in for the Cloud Storage for Firebase rules runtime
 * (cloud-storage-rules-runtime-*.jar), which firebase-tools downloads when the
 * Storage emulator starts and which cannot be fetched on machines without
 * general network access.
 *
 * firebase-tools (lib/emulator/storage/rules/runtime.js) starts it as
 *   java -Djava.security.manager=disallow -Duser.language=en -jar <jar> serve
 * when STORAGE_EMULATOR_BINARY_PATH names the jar, and talks to it over
 * stdin/stdout with one JSON object per line:
 *   - at start, the runtime announces itself with a line whose "id" is -1;
 *   - {"action":"load_ruleset","context":{"rulesetName":..,"source":{"files":[..]}},"id":N}
 *     is answered with {"id":N,"status":"ok","result":{"rulesVersion":V},"errors":[],"warnings":[]};
 *   - {"action":"verify","context":{..},"id":N}
 *     is answered with {"id":N,"status":"ok","result":{"permit":true},"errors":[],"warnings":[]}.
 * Anything written to stderr is logged by firebase-tools as a warning, so this
 * program stays silent there.
 *
 * It ALLOWS EVERY REQUEST: storage.rules are not evaluated. The rules version is
 * still parsed because firebase-tools refuses list operations under version 1.
 * The requests are produced by JSON.stringify, so each is one line and the
 * "action" key comes first and "id" last; plain string matching is enough and
 * keeps the program free of dependencies.
 *
 * Built with `--release 11` (see build.sh) so any Java >= 11 runs it.
 */

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public final class StorageRulesStandIn {
    private static final Pattern ACTION = Pattern.compile("\"action\"\\s*:\\s*\"([a-z_]+)\"");
    private static final Pattern ID = Pattern.compile("\"id\"\\s*:\\s*(-?\\d+)\\s*}\\s*$");
    /* rules_version = '2' or "2" (the double quotes arrive JSON-escaped). */
    private static final Pattern RULES_VERSION =
            Pattern.compile("rules_version\\s*=\\s*(?:'|\\\\\")(\\d+)(?:'|\\\\\")");

    private StorageRulesStandIn() {}

    public static void main(String[] args) throws IOException {
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        out.println("{\"id\":-1,\"status\":\"ok\",\"result\":{}}");
        BufferedReader in =
                new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            line = line.trim();
            if (line.isEmpty()) {
                continue;
            }
            Matcher id = ID.matcher(line);
            Matcher action = ACTION.matcher(line);
            if (!id.find() || !action.find()) {
                continue; // not a request we understand; firebase-tools would wait, so say nothing
            }
            String result;
            if (action.group(1).equals("load_ruleset")) {
                Matcher version = RULES_VERSION.matcher(line);
                result = "{\"rulesVersion\":" + (version.find() ? version.group(1) : "1") + "}";
            } else {
                result = "{\"permit\":true}";
            }
            out.println("{\"id\":" + id.group(1) + ",\"status\":\"ok\",\"result\":" + result
                    + ",\"errors\":[],\"warnings\":[]}");
        }
    }
}
