// The program ferroflow's `flink` job type runs on a Flink cluster through the REST API
// (`POST /jars/<id>/run`): it executes a list of Flink SQL statements, DDL first, then every
// INSERT as one job (a statement set). Compiled at set-up time against the cluster's own
// lib/*.jar by scripts/flink-local.sh (never committed as a jar).
//
// Arguments: --mode batch|streaming --statements <base64 of the statements, UTF-8, each one
// ended by a line holding only ";">
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;

import org.apache.flink.table.api.EnvironmentSettings;
import org.apache.flink.table.api.StatementSet;
import org.apache.flink.table.api.TableEnvironment;

public class FerroflowSqlRunner {
    public static void main(String[] args) throws Exception {
        String mode = "batch";
        String encoded = null;
        for (int i = 0; i + 1 < args.length; i += 2) {
            switch (args[i]) {
                case "--mode": mode = args[i + 1]; break;
                case "--statements": encoded = args[i + 1]; break;
                default: throw new IllegalArgumentException("unknown argument " + args[i]);
            }
        }
        if (encoded == null) {
            throw new IllegalArgumentException("--statements is required");
        }
        String text = new String(Base64.getDecoder().decode(encoded), StandardCharsets.UTF_8);
        List<String> statements = new ArrayList<>();
        StringBuilder current = new StringBuilder();
        for (String line : text.split("\n", -1)) {
            if (line.trim().equals(";")) {
                if (current.toString().trim().length() > 0) {
                    statements.add(current.toString());
                }
                current.setLength(0);
            } else {
                current.append(line).append('\n');
            }
        }
        if (current.toString().trim().length() > 0) {
            statements.add(current.toString());
        }
        EnvironmentSettings settings = mode.equals("streaming")
                ? EnvironmentSettings.inStreamingMode()
                : EnvironmentSettings.inBatchMode();
        TableEnvironment env = TableEnvironment.create(settings);
        StatementSet inserts = env.createStatementSet();
        int count = 0;
        for (String s : statements) {
            if (s.trim().toUpperCase().startsWith("INSERT")) {
                inserts.addInsertSql(s);
                count++;
            } else {
                env.executeSql(s);
            }
        }
        if (count == 0) {
            throw new IllegalArgumentException("no INSERT statement: nothing to run");
        }
        inserts.execute();
    }
}
